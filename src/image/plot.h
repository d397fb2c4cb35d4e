// Line plots as SVG, drawn by dit itself: the training loss curve (dit train's loss.svg) and the figures of
// docs/ (`dit plot`, e.g. docs/time-to-quality.svg). One figure = panels side by side, each with its own y axis
// and any number of labelled series of (x, y) points.
#ifndef DIT_IMAGE_PLOT_H
#define DIT_IMAGE_PLOT_H

#include "dit.h"

typedef struct {
    const char *label;      // legend text
    const char *color;      // SVG color name or #rrggbb
    const double *x, *y;    // n points, drawn in order
    int n;
    int markers;            // 1: a dot at every point (few points); 0: the line alone (many points)
} plot_series;

typedef struct {
    const char *title;      // above the panel (may be NULL)
    const char *x_label, *y_label;
    int y_from_zero;        // 1: the y axis starts at 0 (losses); 0: at the smallest value
    const plot_series *series;
    int count;
} plot_panel;

// Write panels side by side (each 640 x 360) to path, atomically.
dit_status plot_write_svg(const char *path, const plot_panel *panels, int num_panels);

#endif
