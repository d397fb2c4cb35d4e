// Progress bar: redrawn in place on a TTY, plain lines when stderr is a file or pipe.
#include "base/clock.h"
#include "cli/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void format_duration(char *buf, size_t n, double seconds) {
    int s = (int)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%dh%02dm", s / 3600, s / 60 % 60);
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", s / 60, s % 60);
    else snprintf(buf, n, "%ds", s);
}

void progress_begin(progress_bar *p, const char *label, int total) {
    p->label = label;
    p->total = total > 0 ? total : 1;
    p->is_tty = isatty(fileno(stderr));
    p->last_printed = 0;
    p->start = now_seconds();
}

void progress_update(progress_bar *p, int done) {
    double elapsed = now_seconds() - p->start;
    double per_step = done > 0 ? elapsed / done : 0;
    char eta[32];
    format_duration(eta, sizeof eta, per_step * (p->total - done));
    if (p->is_tty) {
        const int width = 30;
        int filled = (int)((long long)width * done / p->total);
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
        bar[width] = '\0';
        fprintf(stderr, "\r%s %d/%d [%s] %.2f s/it ETA %s  ", p->label, done, p->total, bar, per_step, eta);
    } else if (done == p->total || done - p->last_printed >= (p->total + 9) / 10) {
        fprintf(stderr, "%s %d/%d, %.2f s/it, ETA %s\n", p->label, done, p->total, per_step, eta);
        p->last_printed = done;
    }
    fflush(stderr);
}

void progress_end(progress_bar *p) {
    if (p->is_tty) fprintf(stderr, "\n");
}
