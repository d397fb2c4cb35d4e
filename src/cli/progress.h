// A progress bar for long loops: on a terminal one line redrawn in place (step, s/it, ETA); otherwise plain
// lines at about every tenth of the work, so logs stay readable.
#ifndef DIT_CLI_PROGRESS_H
#define DIT_CLI_PROGRESS_H

typedef struct {
    const char *label;
    int total;
    int is_tty;
    int last_printed;
    double start;
} progress_bar;

void progress_begin(progress_bar *p, const char *label, int total);
void progress_update(progress_bar *p, int done);   // done = 1..total
void progress_end(progress_bar *p);

#endif
