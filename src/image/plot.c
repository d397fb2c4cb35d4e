// SVG line plots (image/plot.h): axes with end labels and a middle tick, polylines, optional point markers and
// a legend, panels side by side. Written atomically, as the training log's loss.svg always was.
#include <math.h>
#include <stdio.h>

#include "base/fileio.h"
#include "image/plot.h"

static void panel_svg(FILE *f, double left, const plot_panel *p) {
    const double W = 640, H = 360, L = 64, R = 20, T = p->title ? 36 : 20, Bm = 44;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < p->count; s++)
        for (int i = 0; i < p->series[s].n; i++) {
            const double x = p->series[s].x[i], y = p->series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
        }
    if (!isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (p->y_from_zero || (y0 > 0 && y0 < 0.25 * y1)) y0 = fmin(0, y0);   // near zero anyway: show it
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    const double pw = W - L - R, ph = H - T - Bm;
#define PX(v) (left + L + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (H - Bm - ((v) - y0) / (y1 - y0) * ph)
    if (p->title) fprintf(f, "<text x=\"%g\" y=\"20\" font-weight=\"bold\">%s</text>\n", left + L, p->title);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", left + L, H - Bm, left + W - R, H - Bm);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", left + L, T, left + L, H - Bm);
    const double ym = 0.5 * (y0 + y1), xm = 0.5 * (x0 + x1);
    fprintf(f, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", left + L, PY(ym), left + W - R, PY(ym));
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.4g</text>\n", left + L - 4, T + 4, y1);
    fprintf(f, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", left + L - 4, PY(ym) + 4, ym);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.4g</text>\n", left + L - 4, H - Bm, y0);
    fprintf(f, "<text x=\"%g\" y=\"%g\">%.4g</text><text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%.4g</text>"
               "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.4g</text>\n",
            left + L, H - Bm + 16, x0, PX(xm), H - Bm + 16, xm, left + W - R, H - Bm + 16, x1);
    if (p->x_label)
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%s</text>\n", PX(xm), H - 6, p->x_label);
    if (p->y_label)
        fprintf(f, "<text transform=\"translate(%g,%.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", left + 14,
                PY(ym), p->y_label);
    for (int s = 0; s < p->count; s++) {
        const plot_series *q = &p->series[s];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", q->color);
        for (int i = 0; i < q->n; i++)
            if (isfinite(q->x[i]) && isfinite(q->y[i])) fprintf(f, "%.1f,%.1f ", PX(q->x[i]), PY(q->y[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; q->markers && i < q->n; i++)
            if (isfinite(q->x[i]) && isfinite(q->y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(q->x[i]), PY(q->y[i]), q->color);
        fprintf(f, "<text x=\"%g\" y=\"%g\" fill=\"%s\" text-anchor=\"end\">%s</text>\n", left + W - R - 4,
                T + 14 + 16 * s, q->color, q->label);
    }
#undef PX
#undef PY
}

dit_status plot_write_svg(const char *path, const plot_panel *panels, int num_panels) {
    atomic_file a;
    if (atomic_file_open(&a, path)) return DIT_ERR;
    fprintf(a.f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"360\" font-family=\"sans-serif\" "
                 "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", 640 * num_panels);
    for (int k = 0; k < num_panels; k++) panel_svg(a.f, 640.0 * k, &panels[k]);
    fprintf(a.f, "</svg>\n");
    return atomic_file_commit(&a);
}
