#include "parse.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

double *read_numbers(FILE *in, size_t *count)
{
    size_t cap = 64, n = 0;
    double *values = malloc(cap * sizeof *values);
    char line[256];
    int lineno = 0;
    int skipped = 0;

    if (!values)
        return NULL;
    while (fgets(line, sizeof line, in)) {
        char *p = line, *end;
        lineno++;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        double v = strtod(p, &end);
        if (end == p) {
            fprintf(stderr, "line %d: not a number: %s", lineno, line);
            free(values);
            return NULL;
        }
        if (n == cap) {
            double *grown = realloc(values, 2 * cap * sizeof *values);
            if (!grown) {
                free(values);
                return NULL;
            }
            values = grown;
            cap *= 2;
        }
        values[n++] = v;
    }
    *count = n;
    return values;
}
