#ifndef WINDOW_H
#define WINDOW_H
#include <stddef.h>

/* out[i] = weighted mean of in[i .. i+k-1]; writes n-k+1 values. */
typedef void (*smooth_fn)(const double *in, double *out, size_t n);

/* The kernel for window size k (2 <= k <= WINDOW_MAX), or NULL. */
smooth_fn window_kernel(int k);

#endif
