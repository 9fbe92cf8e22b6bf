#ifndef PARSE_H
#define PARSE_H
#include <stddef.h>
#include <stdio.h>

/* Reads one number per line ('#' starts a comment, blank lines are skipped).
   Returns a malloc'ed array and stores its length in *count; NULL on error. */
double *read_numbers(FILE *in, size_t *count);

#endif
