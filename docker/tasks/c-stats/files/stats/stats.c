#include "stats.h"

#include <math.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of_sorted(const double *v, size_t n)
{
    return v[n / 2];
}

int summarize(double *values, size_t count, summary_t *out)
{
    double sum = 0.0, sq = 0.0;

    if (count == 0)
        return -1;
    qsort(values, count, sizeof *values, cmp_double);
    for (size_t i = 0; i < count; i++)
        sum += values[i];
    out->count = count;
    out->min = values[0];
    out->max = values[count - 1];
    out->mean = sum / (double)count;
    for (size_t i = 0; i < count; i++)
        sq += (values[i] - out->mean) * (values[i] - out->mean);
    /* sample standard deviation */
    out->stddev = count > 1 ? sqrt(sq / (double)(count - 1)) : 0.0;
    out->median = median_of_sorted(values, count);
    return 0;
}
