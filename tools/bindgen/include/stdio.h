/* Stub C library header for tools/bindgen: FILE is only ever used through a pointer. */
#pragma once
#include <stddef.h>
typedef struct _IO_FILE FILE;
