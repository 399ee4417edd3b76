/* Stub C library header for tools/bindgen: only the names matter, not the sizes. */
#pragma once
typedef unsigned long size_t;
typedef long ptrdiff_t;
#define NULL ((void *)0)
#define offsetof(t, m) __builtin_offsetof(t, m)
