// Class names: the ImageNet-1k names shipped with dit (data/imagenet1k-classes.txt, the synonyms of each
// WordNet synset in the standard class order, built into the library by scripts/embed.sh), and the lookup
// of a class by id or by name that `dit sample --class` and `dit serve` share.
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "dit.h"
#include "models/dit_model.h"

extern const char *const dit_imagenet_classes[];
extern const int dit_imagenet_classes_count;

// The first synonym of each line, in static storage (the longest, "American Staffordshire terrier", has 30
// characters): nothing to allocate, so nothing to fail.
static char imagenet_names[1000][64];
static pthread_once_t imagenet_once = PTHREAD_ONCE_INIT;

static void imagenet_init(void) {
    DIT_CHECK(dit_imagenet_classes_count == 1000);
    for (int i = 0; i < 1000; i++) {
        const char *line = dit_imagenet_classes[i];
        size_t n = strcspn(line, ",");
        DIT_CHECK(n < sizeof imagenet_names[i]);
        memcpy(imagenet_names[i], line, n);
        imagenet_names[i][n] = '\0';
    }
}

const char *dit_imagenet_class_synonyms(int label) {
    return label >= 0 && label < 1000 ? dit_imagenet_classes[label] : NULL;
}

const char *dit_imagenet_class_name(int label) {
    if (label < 0 || label >= 1000) return NULL;
    pthread_once(&imagenet_once, imagenet_init);
    return imagenet_names[label];
}

// Names compare case-insensitively, with '_' as a space and runs of spaces as one, ends trimmed.
static void normalize(const char *in, size_t n, char *out, size_t cap) {
    size_t k = 0;
    int pending_space = 0;
    for (size_t i = 0; i < n && in[i]; i++) {
        char c = in[i] == '_' ? ' ' : (char)tolower((unsigned char)in[i]);
        if (isspace((unsigned char)c)) {
            pending_space = k > 0;
            continue;
        }
        if (pending_space && k + 1 < cap) out[k++] = ' ';
        pending_space = 0;
        if (k + 1 < cap) out[k++] = c;
    }
    out[k] = '\0';
}

// The names a class answers to: the model's own name, or each ImageNet synonym. Calls visit(name) for
// each, normalized; stops early when visit returns non-zero.
typedef int (*name_visitor)(void *ctx, int label, const char *name);
static int visit_names(const dit_model *m, int label, name_visitor visit, void *ctx) {
    char buf[256];
    if (m->class_names) {
        normalize(m->class_names[label], strlen(m->class_names[label]), buf, sizeof buf);
        return visit(ctx, label, buf);
    }
    const char *s = dit_imagenet_class_synonyms(label);
    while (s && *s) {
        size_t n = strcspn(s, ",");
        normalize(s, n, buf, sizeof buf);
        if (buf[0] && visit(ctx, label, buf)) return 1;
        s += n;
        if (*s == ',') s++;
    }
    return 0;
}

static int has_names(const dit_model *m) { return m->class_names || m->cfg.num_classes == 1000; }

static int equals(void *ctx, int label, const char *name) { (void)label; return !strcmp(ctx, name); }
static int contains(void *ctx, int label, const char *name) { (void)label; return strstr(name, ctx) != NULL; }

// Levenshtein distance, capped at 99 (names are short).
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 95 || lb > 95) return 99;
    int row[97];
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

typedef struct { const char *text; int best; } nearest_ctx;
static int nearest(void *ctx, int label, const char *name) {
    (void)label;
    nearest_ctx *c = ctx;
    int d = edit_distance(c->text, name);
    if (d < c->best) c->best = d;
    return 0;
}

// "207 golden retriever, 208 Labrador retriever" into buf, at most max entries.
static void append_class(char *buf, size_t cap, const dit_model *m, int label, int first) {
    size_t k = strlen(buf);
    snprintf(buf + k, cap - k, "%s%d %s", first ? "" : ", ", label, dit_model_class_name(m, label));
}

dit_status dit_model_find_class(const dit_model *m, const char *text, int *label) {
    const int K = m->cfg.num_classes;
    char want[256];
    normalize(text, strlen(text), want, sizeof want);
    if (!want[0]) return dit_set_error("class: empty name (give a class id 0..%d or a name)", K - 1);
    if (isdigit((unsigned char)want[0])) {
        char *end;
        errno = 0;
        long v = strtol(want, &end, 10);
        if (!*end) {
            if (errno || v < 0 || v >= K)
                return dit_set_error("class %s: the model has classes 0..%d", want, K - 1);
            *label = (int)v;
            return DIT_OK;
        }
    }
    if (!has_names(m))
        return dit_set_error("class '%s': the model's classes have no names; give an id 0..%d", text, K - 1);
    int found = -1, count = 0;
    char list[1024] = "";
    for (int c = 0; c < K; c++)
        if (visit_names(m, c, equals, want)) {
            if (count < 8) append_class(list, sizeof list, m, c, count == 0);
            found = c, count++;
        }
    if (count == 1) {
        *label = found;
        return DIT_OK;
    }
    if (count > 1) return dit_set_error("class '%s' is ambiguous: %s (give the id)", text, list);
    // Unknown: suggest the names that contain it, else the nearest by edit distance.
    int shown = 0;
    for (int c = 0; c < K && shown < 8; c++)
        if (visit_names(m, c, contains, want)) append_class(list, sizeof list, m, c, shown++ == 0);
    if (!shown) {
        int *dist = dit_malloc(sizeof(int) * (size_t)K), best = 99;
        if (!dist) return DIT_ERR;
        for (int c = 0; c < K; c++) {
            nearest_ctx ctx = {want, 99};
            visit_names(m, c, nearest, &ctx);
            dist[c] = ctx.best;
            if (ctx.best < best) best = ctx.best;
        }
        int limit = (int)strlen(want) / 2 + 1;
        for (int d = best; d <= best + 1 && d <= limit; d++)
            for (int c = 0; c < K && shown < 5; c++)
                if (dist[c] == d) append_class(list, sizeof list, m, c, shown++ == 0);
        free(dist);
    }
    if (shown) return dit_set_error("unknown class '%s'; close matches: %s", text, list);
    return dit_set_error("unknown class '%s' (no close match; the model has classes 0..%d)", text, K - 1);
}
