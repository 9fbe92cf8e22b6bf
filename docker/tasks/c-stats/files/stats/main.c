#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"
#include "parse.h"
#include "stats.h"
#include "window.h"

int main(int argc, char **argv)
{
    FILE *in = stdin;
    int hist = 0, smooth = 0;
    const char *path = NULL;
    size_t n = 0;
    summary_t s;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hist") == 0)
            hist = 1;
        else if (strcmp(argv[i], "--smooth") == 0 && i + 1 < argc)
            smooth = atoi(argv[++i]);
        else
            path = argv[i];
    }
    if (path && !(in = fopen(path, "r"))) {
        perror(path);
        return 2;
    }
    double *values = read_numbers(in, &n);
    if (!values)
        return 1;
    if (smooth) {
        smooth_fn kernel = window_kernel(smooth);
        if (!kernel || (size_t)smooth > n) {
            fprintf(stderr, "--smooth: window must be in 2..min(%d, count)\n", 96);
            return 2;
        }
        double *smoothed = malloc(n * sizeof *smoothed);
        if (!smoothed)
            return 1;
        kernel(values, smoothed, n);
        free(values);
        values = smoothed;
        n = n - (size_t)smooth + 1;
    }
    if (summarize(values, n, &s) != 0) {
        fprintf(stderr, "no data\n");
        return 1;
    }
    printf("count  %zu\n", s.count);
    printf("min    %.4f\n", s.min);
    printf("max    %.4f\n", s.max);
    printf("mean   %.4f\n", s.mean);
    printf("median %.4f\n", s.median);
    printf("stddev %.4f\n", s.stddev);
    if (hist)
        print_histogram(stdout, values, n, 10);
    free(values);
    return 0;
}
