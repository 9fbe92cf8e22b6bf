#include "histogram.h"

void print_histogram(FILE *out, const double *sorted, size_t count, int bins)
{
    double lo = sorted[0], hi = sorted[count - 1];
    double width = (hi - lo) / bins;
    size_t counts[64] = {0};
    size_t peak = 0;

    if (bins > 64)
        bins = 64;
    for (size_t i = 0; i < count; i++) {
        int b = width > 0 ? (int)((sorted[i] - lo) / width) : 0;
        if (b >= bins)
            b = bins - 1;
        counts[b]++;
    }
    for (int b = 0; b < bins; b++)
        if (counts[b] > peak)
            peak = counts[b];
    for (int b = 0; b < bins; b++) {
        int len = peak ? (int)(40 * counts[b] / peak) : 0;
        fprintf(out, "%10.3f | ", lo + b * width);
        for (int i = 0; i < len; i++)
            fputc('#', out);
        fprintf(out, " %zu\n", counts[b]);
    }
}
