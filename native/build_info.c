/* What this build of the native libraries was configured with, for the tests and for
 * system_info(): LLAMA_BINDING_CPU_AMX is set by CMakeLists.txt. */
#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#ifndef LLAMA_BINDING_CPU_AMX
#define LLAMA_BINDING_CPU_AMX 0
#endif

/* 1 when the CPU backend was allowed to compile ggml's AMX tile kernels. */
LLAMA_BINDING_EXPORT int llama_binding_cpu_amx(void) { return LLAMA_BINDING_CPU_AMX; }
