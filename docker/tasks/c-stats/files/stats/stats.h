#ifndef STATS_H
#define STATS_H
#include <stddef.h>

typedef struct {
    size_t count;
    double min, max, mean, median, stddev;
} summary_t;

/* Sorts values in place and fills *out. Returns 0 on success, -1 if count == 0. */
int summarize(double *values, size_t count, summary_t *out);

#endif
