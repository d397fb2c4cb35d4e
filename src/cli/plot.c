// `dit plot`: a figure from a table, drawn by dit's own SVG plotter (src/image/plot.h): one panel per --y column
// against the --x column, one line per value of the --series column. experiments/time_to_quality.sh draws
// docs/time-to-quality.svg with it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "image/plot.h"

#define MAX_COLUMNS 32
#define MAX_SERIES 8
#define MAX_PANELS 4

static void print_help(void) {
    printf("usage: dit plot --tsv FILE --x COLUMN --y COLUMN [--y COLUMN ...] [--series COLUMN] -o FILE.svg\n"
           "\n"
           "FILE: tab-separated, a header line of column names, then numbers (the series column may be text).\n"
           "  --x C          the horizontal axis (e.g. minutes or steps)\n"
           "  --y C          one panel per --y (up to 4), side by side\n"
           "  --series C     one line per distinct value of this column (up to 8); default: one line\n"
           "  --title T      a title over the first panel\n"
           "  -o FILE        the SVG to write\n");
}

// Split a line at tabs in place; returns the number of fields (at most MAX_COLUMNS).
static int split_tabs(char *line, char **fields) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < MAX_COLUMNS;) {
        fields[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = 0, p = tab + 1;
    }
    return n;
}

static int column_of(char **names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

int cmd_plot(int argc, char **argv) {
    const char *tsv = NULL, *x_name = NULL, *series_name = NULL, *out = NULL, *title = NULL, *y_names[MAX_PANELS];
    int num_y = 0;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (cli_take(&a, NULL, "--tsv")) tsv = a.value;
        else if (cli_take(&a, NULL, "--x")) x_name = a.value;
        else if (cli_take(&a, NULL, "--y")) {
            if (num_y == MAX_PANELS) return cli_usage_error("plot: at most %d --y columns", MAX_PANELS);
            y_names[num_y++] = a.value;
        } else if (cli_take(&a, NULL, "--series")) series_name = a.value;
        else if (cli_take(&a, NULL, "--title")) title = a.value;
        else if (cli_take(&a, "-o", "--output")) out = a.value;
        else if (a.failed) return 2;
        else return cli_usage_error("plot: unknown option '%s' (see dit plot --help)", arg);
    }
    if (!tsv || !x_name || !num_y || !out) return cli_usage_error("plot: --tsv, --x, --y and -o are required");
    FILE *f = fopen(tsv, "r");
    if (!f) {
        fprintf(stderr, "dit: %s: cannot open\n", tsv);
        return 1;
    }
    char header[4096], line[4096], *names[MAX_COLUMNS], *fields[MAX_COLUMNS];
    if (!fgets(header, sizeof header, f)) header[0] = 0;
    const int ncol = split_tabs(header, names);
    int xc = column_of(names, ncol, x_name), sc = series_name ? column_of(names, ncol, series_name) : -2, yc[MAX_PANELS];
    for (int k = 0; k < num_y; k++) yc[k] = column_of(names, ncol, y_names[k]);
    int missing = xc < 0 || sc == -1;
    for (int k = 0; k < num_y; k++) missing |= yc[k] < 0;
    if (missing) {
        fclose(f);
        fprintf(stderr, "dit: %s: a column named by --x, --y or --series is not in the header\n", tsv);
        return 1;
    }
    // rows grouped by series, in order of first appearance
    char series_label[MAX_SERIES][64];
    double *xs[MAX_SERIES] = {0}, *ys[MAX_PANELS][MAX_SERIES] = {{0}};
    int counts[MAX_SERIES] = {0}, num_series = 0, status = 1;
    while (fgets(line, sizeof line, f)) {
        if (split_tabs(line, fields) < ncol) continue;
        const char *label = sc >= 0 ? fields[sc] : "";
        int s = 0;
        while (s < num_series && strcmp(series_label[s], label)) s++;
        if (s == num_series) {
            if (num_series == MAX_SERIES) continue;
            snprintf(series_label[num_series++], sizeof series_label[0], "%s", label);
        }
        const int i = counts[s]++;
        xs[s] = dit_xrealloc(xs[s], (size_t)counts[s] * sizeof(double));
        xs[s][i] = strtod(fields[xc], NULL);
        for (int k = 0; k < num_y; k++) {
            ys[k][s] = dit_xrealloc(ys[k][s], (size_t)counts[s] * sizeof(double));
            ys[k][s][i] = strtod(fields[yc[k]], NULL);
        }
    }
    fclose(f);
    static const char *const colors[MAX_SERIES] = {"black", "#d62728", "steelblue", "darkorange", "#2ca02c",
                                                   "#9467bd", "#8c564b", "#e377c2"};
    plot_series series[MAX_PANELS][MAX_SERIES];
    plot_panel panels[MAX_PANELS];
    for (int k = 0; k < num_y; k++) {
        for (int s = 0; s < num_series; s++)
            series[k][s] = (plot_series){series_label[s], colors[s], xs[s], ys[k][s], counts[s], 1};
        panels[k] = (plot_panel){k == 0 ? title : NULL, x_name, y_names[k], 0, series[k], num_series};
    }
    if (plot_write_svg(out, panels, num_y) == DIT_OK) {
        printf("wrote %s (%d series, %d panels)\n", out, num_series, num_y);
        status = 0;
    } else {
        cli_fail();
    }
    for (int s = 0; s < MAX_SERIES; s++) {
        free(xs[s]);
        for (int k = 0; k < MAX_PANELS; k++) free(ys[k][s]);
    }
    return status;
}
