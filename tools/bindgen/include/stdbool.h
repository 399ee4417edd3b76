/* Stub C library header for tools/bindgen. */
#pragma once
#define bool _Bool
#define true 1
#define false 0
