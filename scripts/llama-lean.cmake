# Included by llama.cpp's own project() call while pip compiles llama-cpp-python for sounding
# (scripts/bootstrap.sh passes -DCMAKE_PROJECT_llama.cpp_INCLUDE=<this file> in CMAKE_ARGS).
#
# Why: llama-cpp-python force-enables llama.cpp's "common" library (argument parsing, chat templates,
# an HTTP client, ...) and installs it, but its Python bindings only load libllama and ggml. Common is
# the largest C++ part of the build. A normal variable shadows the forced cache entry inside llama.cpp's
# directory scope (option() leaves an existing normal variable alone, policy CMP0077), so neither common
# nor the HTTP library it alone needs are configured. Tests, examples, tools and the server are already
# off when llama.cpp is built as a subproject.
set(LLAMA_BUILD_COMMON OFF)
