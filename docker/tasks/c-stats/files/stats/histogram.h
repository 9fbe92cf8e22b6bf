#ifndef HISTOGRAM_H
#define HISTOGRAM_H
#include <stddef.h>
#include <stdio.h>

/* Prints an ASCII histogram of sorted values with `bins` equal-width bins. */
void print_histogram(FILE *out, const double *sorted, size_t count, int bins);

#endif
