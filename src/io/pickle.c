// The restricted pickle virtual machine of pickle.h. Opcode semantics follow CPython's Lib/pickle.py
// (_Unpickler) and pickletools' documentation; torch's persistent ids and rebuild functions follow
// torch/serialization.py and torch/_utils.py. Nothing is imported or executed: calls are data transforms.
#include "io/pickle.h"

#include <errno.h>
#include <stdarg.h>
#include <stdalign.h>
#include <string.h>

#include "base/error.h"

// Bounds on what an (attacker-controlled) pickle can make us allocate.
enum {
    PICKLE_MAX_STACK = 1 << 20,            // stack entries
    PICKLE_MAX_MARKS = 1 << 20,            // nested MARKs
};
#define PICKLE_MAX_VALUES ((size_t)50 * 1000 * 1000)
#define PICKLE_MAX_ARENA ((size_t)1 << 30)
#define PICKLE_ARENA_PER_BYTE ((size_t)512)   // value bytes per input byte a pickle may build
#define PICKLE_BLOCK_SIZE ((size_t)64 * 1024)

struct pickle_block {
    pickle_block *next;
    size_t used, cap;
    max_align_t data[];
};

typedef struct {
    const uint8_t *start, *p, *end;
    const char *what;
    pickle_doc *doc;
    size_t op_pos;
    uint8_t op;
    pickle_value **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t mark_count, marks_cap;
    pickle_value **memo;
    size_t memo_cap, memo_count, memo_limit;
    size_t arena_limit;   // bytes of values this pickle may build (grows with its size; see pickle_parse)
} pickle_vm;

static dit_status vm_error(pickle_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static dit_status vm_error(pickle_vm *vm, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dit_set_error("%s: pickle byte %zu (opcode 0x%02x): %s", vm->what, vm->op_pos, vm->op, msg);
}

// ---- arena -------------------------------------------------------------------------------------

static void *arena_alloc(pickle_vm *vm, size_t n) {
    pickle_doc *doc = vm->doc;
    n = (n + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t);
    if (n > vm->arena_limit || doc->arena_bytes + n > vm->arena_limit) {
        vm_error(vm, "the pickle needs more than %zu bytes of values", vm->arena_limit);
        return NULL;
    }
    pickle_block *b = doc->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > PICKLE_BLOCK_SIZE ? n : PICKLE_BLOCK_SIZE;
        b = dit_malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        // A big one-off block goes behind the current one so the current block keeps filling.
        if (doc->blocks && n > PICKLE_BLOCK_SIZE) {
            b->next = doc->blocks->next;
            doc->blocks->next = b;
        } else {
            b->next = doc->blocks;
            doc->blocks = b;
        }
    }
    void *ptr = (char *)b->data + b->used;
    b->used += n;
    doc->arena_bytes += n;
    return ptr;
}

static pickle_value *new_value(pickle_vm *vm, pickle_kind kind) {
    if (vm->doc->value_count >= PICKLE_MAX_VALUES) {
        vm_error(vm, "more than %zu values", PICKLE_MAX_VALUES);
        return NULL;
    }
    pickle_value *v = arena_alloc(vm, sizeof *v);
    if (!v) return NULL;
    memset(v, 0, sizeof *v);
    v->kind = kind;
    vm->doc->value_count++;
    return v;
}

static char *arena_strdup(pickle_vm *vm, const void *s, size_t len) {
    if (len >= PICKLE_MAX_ARENA) {
        vm_error(vm, "string of %zu bytes is too long", len);
        return NULL;
    }
    char *d = arena_alloc(vm, len + 1);
    if (!d) return NULL;
    if (len) memcpy(d, s, len);
    d[len] = 0;
    return d;
}

static pickle_value *new_string(pickle_vm *vm, pickle_kind kind, const void *s, size_t len) {
    char *d = arena_strdup(vm, s, len);
    if (!d) return NULL;
    pickle_value *v = new_value(vm, kind);
    if (!v) return NULL;
    v->u.str.data = d;
    v->u.str.len = len;
    return v;
}

static pickle_value *new_int(pickle_vm *vm, int64_t i) {
    pickle_value *v = new_value(vm, PV_INT);
    if (v) v->u.i = i;
    return v;
}

static pickle_value *new_opaque(pickle_vm *vm, const char *module, const char *name) {
    pickle_value *v = new_value(vm, PV_OPAQUE);
    if (!v) return NULL;
    v->u.cls.module = module;
    v->u.cls.name = name;
    return v;
}

// Sequences and dicts grow by doubling inside the arena (the old array is abandoned: at most 2x waste).
static dit_status seq_push(pickle_vm *vm, pickle_value *seq, pickle_value *item) {
    if (seq->u.seq.count == seq->u.seq.cap) {
        size_t cap = seq->u.seq.cap ? seq->u.seq.cap * 2 : 4;
        pickle_value **items = arena_alloc(vm, cap * sizeof *items);
        if (!items) return DIT_ERR;
        if (seq->u.seq.count) memcpy(items, seq->u.seq.items, seq->u.seq.count * sizeof *items);
        seq->u.seq.items = items;
        seq->u.seq.cap = cap;
    }
    seq->u.seq.items[seq->u.seq.count++] = item;
    return DIT_OK;
}

static dit_status dict_push(pickle_vm *vm, pickle_value *dict, pickle_value *key, pickle_value *value) {
    if (dict->u.dict.count == dict->u.dict.cap) {
        size_t cap = dict->u.dict.cap ? dict->u.dict.cap * 2 : 4;
        pickle_value **keys = arena_alloc(vm, cap * sizeof *keys);
        pickle_value **values = keys ? arena_alloc(vm, cap * sizeof *values) : NULL;
        if (!values) return DIT_ERR;
        if (dict->u.dict.count) {
            memcpy(keys, dict->u.dict.keys, dict->u.dict.count * sizeof *keys);
            memcpy(values, dict->u.dict.values, dict->u.dict.count * sizeof *values);
        }
        dict->u.dict.keys = keys;
        dict->u.dict.values = values;
        dict->u.dict.cap = cap;
    }
    dict->u.dict.keys[dict->u.dict.count] = key;
    dict->u.dict.values[dict->u.dict.count] = value;
    dict->u.dict.count++;
    return DIT_OK;
}

// ---- stack, marks, memo ------------------------------------------------------------------------

static size_t stack_base(const pickle_vm *vm) { return vm->mark_count ? vm->marks[vm->mark_count - 1] : 0; }

static dit_status push(pickle_vm *vm, pickle_value *v) {
    if (!v) return DIT_ERR;   // the allocation failure already set the message
    if (vm->sp == vm->stack_cap) {
        if (vm->stack_cap >= PICKLE_MAX_STACK) return vm_error(vm, "stack deeper than %d", PICKLE_MAX_STACK);
        pickle_value **grown = dit_realloc(vm->stack, (vm->stack_cap ? vm->stack_cap * 2 : 64) * sizeof *grown);
        if (!grown) return DIT_ERR;
        vm->stack = grown;
        vm->stack_cap = vm->stack_cap ? vm->stack_cap * 2 : 64;
    }
    vm->stack[vm->sp++] = v;
    return DIT_OK;
}

static pickle_value *pop(pickle_vm *vm) {
    if (vm->sp <= stack_base(vm)) {
        vm_error(vm, "stack underflow");
        return NULL;
    }
    return vm->stack[--vm->sp];
}

static pickle_value *top(pickle_vm *vm) {
    if (vm->sp <= stack_base(vm)) {
        vm_error(vm, "stack underflow");
        return NULL;
    }
    return vm->stack[vm->sp - 1];
}

static dit_status push_mark(pickle_vm *vm) {
    if (vm->mark_count == vm->marks_cap) {
        if (vm->marks_cap >= PICKLE_MAX_MARKS) return vm_error(vm, "more than %d nested MARKs", PICKLE_MAX_MARKS);
        size_t *grown = dit_realloc(vm->marks, (vm->marks_cap ? vm->marks_cap * 2 : 16) * sizeof *grown);
        if (!grown) return DIT_ERR;
        vm->marks = grown;
        vm->marks_cap = vm->marks_cap ? vm->marks_cap * 2 : 16;
    }
    vm->marks[vm->mark_count++] = vm->sp;
    return DIT_OK;
}

// The items since the last MARK are stack[*first .. vm->sp); the caller drops them (vm->sp = *first).
static dit_status pop_mark(pickle_vm *vm, size_t *first) {
    if (!vm->mark_count) return vm_error(vm, "no MARK on the stack");
    *first = vm->marks[--vm->mark_count];
    return DIT_OK;
}

// The list/dict that APPENDS/SETITEMS/ADDITEMS extend: the item just below the popped MARK.
static pickle_value *mark_target(pickle_vm *vm, size_t first) {
    if (first <= stack_base(vm)) {
        vm_error(vm, "stack underflow");
        return NULL;
    }
    return vm->stack[first - 1];
}

static dit_status memo_put(pickle_vm *vm, uint64_t index) {
    pickle_value *v = top(vm);
    if (!v) return DIT_ERR;
    if (index >= vm->memo_limit)
        return vm_error(vm, "memo index %llu is beyond the limit %zu", (unsigned long long)index, vm->memo_limit);
    if (index >= vm->memo_cap) {
        size_t cap = vm->memo_cap ? vm->memo_cap : 64;
        while (cap <= index) cap *= 2;
        if (cap > vm->memo_limit) cap = vm->memo_limit;
        pickle_value **grown = dit_realloc(vm->memo, cap * sizeof *grown);
        if (!grown) return DIT_ERR;
        vm->memo = grown;
        memset(vm->memo + vm->memo_cap, 0, (cap - vm->memo_cap) * sizeof *vm->memo);
        vm->memo_cap = cap;
    }
    if (!vm->memo[index]) vm->memo_count++;
    vm->memo[index] = v;
    return DIT_OK;
}

static dit_status memo_get(pickle_vm *vm, uint64_t index) {
    if (index >= vm->memo_cap || !vm->memo[index])
        return vm_error(vm, "memo index %llu was never set", (unsigned long long)index);
    return push(vm, vm->memo[index]);
}

// ---- reading the byte stream -------------------------------------------------------------------

static dit_status need(pickle_vm *vm, uint64_t n) {
    if ((uint64_t)(vm->end - vm->p) < n)
        return vm_error(vm, "truncated: needs %llu more bytes, %zu left", (unsigned long long)n,
                        (size_t)(vm->end - vm->p));
    return DIT_OK;
}

static uint64_t read_le(pickle_vm *vm, int n) {   // caller checked need(n)
    uint64_t x = 0;
    for (int i = 0; i < n; i++) x |= (uint64_t)vm->p[i] << (8 * i);
    vm->p += n;
    return x;
}

// A text argument ending with '\n' (protocol 0). *line excludes the newline.
static dit_status read_line(pickle_vm *vm, const char **line, size_t *len) {
    const uint8_t *nl = memchr(vm->p, '\n', (size_t)(vm->end - vm->p));
    if (!nl) return vm_error(vm, "truncated: text argument without a newline");
    *line = (const char *)vm->p;
    *len = (size_t)(nl - vm->p);
    vm->p = nl + 1;
    return DIT_OK;
}

// Reads a length-prefixed string/bytes argument of `width` bytes (1, 4 or 8).
static dit_status read_counted(pickle_vm *vm, int width, pickle_kind kind) {
    if (need(vm, (uint64_t)width)) return DIT_ERR;
    uint64_t n = read_le(vm, width);
    if (width == 4 && kind == PV_STR && vm->op == 'T' && n >= 0x80000000u)
        return vm_error(vm, "negative BINSTRING length");
    if (need(vm, n)) return DIT_ERR;
    const uint8_t *s = vm->p;
    vm->p += n;
    return push(vm, new_string(vm, kind, s, (size_t)n));
}

static int has_nul(const char *s, size_t n) { return memchr(s, 0, n) != NULL; }

// Text integers (INT, LONG, GET...): copies into a small NUL-terminated buffer. Returns 1 if parsed,
// 0 if the text is a valid integer too wide for 64 bits, -1 if it is not an integer.
static int parse_text_int(const char *s, size_t n, int64_t *out) {
    if (n && s[n - 1] == 'L') n--;   // Python 2 longs
    if (n == 0) return -1;
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (i == n) return -1;
    for (size_t j = i; j < n; j++)
        if (s[j] < '0' || s[j] > '9') return -1;
    if (n > 40) return 0;
    char buf[48];
    memcpy(buf, s, n);
    buf[n] = 0;
    errno = 0;
    long long x = strtoll(buf, NULL, 10);
    if (errno == ERANGE) return 0;
    *out = x;
    return 1;
}

// Little-endian two's complement of n bytes (LONG1/LONG4). Wider than 64 bits: an opaque "int".
static dit_status push_long(pickle_vm *vm, uint64_t n) {
    if (need(vm, n)) return DIT_ERR;
    const uint8_t *b = vm->p;
    vm->p += n;
    if (n == 0) return push(vm, new_int(vm, 0));
    int negative = (b[n - 1] & 0x80) != 0;
    if (n > 8) {
        // Fits in 64 bits only if the extra bytes are pure sign extension of byte 7.
        int ok = ((b[7] & 0x80) != 0) == negative;
        for (uint64_t i = 8; i < n && ok; i++) ok = b[i] == (negative ? 0xff : 0x00);
        if (!ok) return push(vm, new_opaque(vm, "builtins", "int"));
        n = 8;
    }
    uint64_t x = 0;
    for (uint64_t i = 0; i < n; i++) x |= (uint64_t)b[i] << (8 * i);
    if (negative && n < 8) x |= ~(uint64_t)0 << (8 * n);
    int64_t value;
    memcpy(&value, &x, sizeof value);
    return push(vm, new_int(vm, value));
}

// ---- calls on class references: an allow-list of pure data constructors --------------------------

static int is_class(const pickle_value *c, const char *module, const char *name) {
    return c && c->kind == PV_CLASS && !strcmp(c->u.cls.module, module) && !strcmp(c->u.cls.name, name);
}

static int is_builtin(const pickle_value *c, const char *name) {
    return is_class(c, "builtins", name) || is_class(c, "__builtin__", name);
}

static int is_seq(const pickle_value *v) { return v && (v->kind == PV_LIST || v->kind == PV_TUPLE); }

int pickle_storage_dtype(const char *class_name) {
    static const struct { const char *name; dit_dtype dtype; } table[] = {
        {"FloatStorage", DT_F32},  {"HalfStorage", DT_F16}, {"BFloat16Storage", DT_BF16},
        {"DoubleStorage", DT_F64}, {"LongStorage", DT_I64}, {"IntStorage", DT_I32},
        {"ShortStorage", DT_I16},  {"CharStorage", DT_I8},  {"ByteStorage", DT_U8},
        {"BoolStorage", DT_BOOL},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(class_name, table[i].name)) return (int)table[i].dtype;
    return -1;
}

// torch.<dtype> as pickled (a GLOBAL "torch" "float16") for _rebuild_tensor_v3.
static int torch_dtype(const pickle_value *c) {
    static const struct { const char *name; dit_dtype dtype; } table[] = {
        {"float32", DT_F32}, {"float", DT_F32},  {"float16", DT_F16}, {"half", DT_F16},
        {"bfloat16", DT_BF16}, {"float64", DT_F64}, {"double", DT_F64}, {"uint8", DT_U8},
        {"int8", DT_I8}, {"int16", DT_I16}, {"short", DT_I16}, {"int32", DT_I32}, {"int", DT_I32},
        {"int64", DT_I64}, {"long", DT_I64}, {"bool", DT_BOOL},
    };
    if (!c || c->kind != PV_CLASS || strcmp(c->u.cls.module, "torch")) return -1;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(c->u.cls.name, table[i].name)) return (int)table[i].dtype;
    return -1;
}

static dit_status int_tuple(pickle_vm *vm, const pickle_value *v, const char *fn, const char *what,
                            int64_t *out, int *count) {
    if (!is_seq(v)) return vm_error(vm, "%s: %s is a %s, expected a tuple", fn, what, pickle_kind_name(v->kind));
    if (v->u.seq.count > TENSOR_MAX_DIMS)
        return vm_error(vm, "%s: %s has %zu dimensions, at most %d supported", fn, what, v->u.seq.count,
                        TENSOR_MAX_DIMS);
    for (size_t i = 0; i < v->u.seq.count; i++) {
        const pickle_value *e = v->u.seq.items[i];
        if (e->kind != PV_INT || e->u.i < 0)
            return vm_error(vm, "%s: %s[%zu] is not a non-negative integer", fn, what, i);
        out[i] = e->u.i;
    }
    *count = (int)v->u.seq.count;
    return DIT_OK;
}

// torch._utils._rebuild_tensor{,_v2,_v3}(storage, storage_offset, size, stride, ...)
static pickle_value *rebuild_tensor(pickle_vm *vm, const char *fn, const pickle_value *args, int min_args,
                                    int dtype_arg) {
    size_t n = args->u.seq.count;
    if (n < (size_t)min_args) {
        vm_error(vm, "%s expects at least %d arguments, got %zu", fn, min_args, n);
        return NULL;
    }
    pickle_value **a = args->u.seq.items;
    if (a[0]->kind != PV_STORAGE) {
        vm_error(vm, "%s: the storage argument is a %s, not a storage", fn, pickle_kind_name(a[0]->kind));
        return NULL;
    }
    if (a[1]->kind != PV_INT || a[1]->u.i < 0) {
        vm_error(vm, "%s: storage_offset is not a non-negative integer", fn);
        return NULL;
    }
    pickle_value *t = new_value(vm, PV_TENSOR);
    if (!t) return NULL;
    t->u.tensor.storage = a[0];
    t->u.tensor.offset = a[1]->u.i;
    t->u.tensor.dtype = -1;
    int ndim = 0, nstride = 0;
    if (int_tuple(vm, a[2], fn, "size", t->u.tensor.size, &ndim)) return NULL;
    if (int_tuple(vm, a[3], fn, "stride", t->u.tensor.stride, &nstride)) return NULL;
    if (ndim != nstride) {
        vm_error(vm, "%s: size has %d dimensions but stride has %d", fn, ndim, nstride);
        return NULL;
    }
    t->u.tensor.ndim = ndim;
    if (dtype_arg >= 0) {
        t->u.tensor.dtype = torch_dtype(a[dtype_arg]);
        if (t->u.tensor.dtype < 0) {
            const pickle_value *d = a[dtype_arg];
            vm_error(vm, "%s: unsupported dtype %s%s%s", fn, d->kind == PV_CLASS ? d->u.cls.module : "",
                     d->kind == PV_CLASS ? "." : "", d->kind == PV_CLASS ? d->u.cls.name : pickle_kind_name(d->kind));
            return NULL;
        }
    }
    return t;
}

// What REDUCE (is_new = 0) or NEWOBJ/NEWOBJ_EX/INST/OBJ (is_new = 1) make of callable(*args).
static pickle_value *call(pickle_vm *vm, const pickle_value *callable, pickle_value *args, int is_new) {
    if (!is_seq(args)) {
        vm_error(vm, "call arguments are a %s, not a tuple", pickle_kind_name(args->kind));
        return NULL;
    }
    size_t n = args->u.seq.count;
    if (is_class(callable, "collections", "OrderedDict") || is_builtin(callable, "dict")) {
        pickle_value *d = new_value(vm, PV_DICT);
        if (!d) return NULL;
        // OrderedDict([(k, v), ...]) from old protocols
        if (n >= 1 && is_seq(args->u.seq.items[0])) {
            const pickle_value *pairs = args->u.seq.items[0];
            for (size_t i = 0; i < pairs->u.seq.count; i++) {
                const pickle_value *kv = pairs->u.seq.items[i];
                if (is_seq(kv) && kv->u.seq.count == 2 && dict_push(vm, d, kv->u.seq.items[0], kv->u.seq.items[1]))
                    return NULL;
            }
        }
        return d;
    }
    if (is_builtin(callable, "set") || is_builtin(callable, "frozenset") || is_builtin(callable, "list")) {
        pickle_value *l = new_value(vm, PV_LIST);
        if (!l) return NULL;
        if (n >= 1 && is_seq(args->u.seq.items[0])) {
            const pickle_value *items = args->u.seq.items[0];
            for (size_t i = 0; i < items->u.seq.count; i++)
                if (seq_push(vm, l, items->u.seq.items[i])) return NULL;
        }
        return l;
    }
    if (!is_new && callable->kind == PV_CLASS && !strcmp(callable->u.cls.module, "torch._utils")) {
        const char *fn = callable->u.cls.name;
        if (!strcmp(fn, "_rebuild_tensor")) return rebuild_tensor(vm, fn, args, 4, -1);
        if (!strcmp(fn, "_rebuild_tensor_v2")) return rebuild_tensor(vm, fn, args, 4, -1);
        if (!strcmp(fn, "_rebuild_tensor_v3")) return rebuild_tensor(vm, fn, args, 7, 6);
        if (!strcmp(fn, "_rebuild_parameter") || !strcmp(fn, "_rebuild_parameter_with_state")) {
            if (n < 1) {
                vm_error(vm, "%s expects at least 1 argument", fn);
                return NULL;
            }
            return args->u.seq.items[0];   // a Parameter is its data for our purposes
        }
    }
    // Everything else (argparse.Namespace, torch.device, numpy scalars, os.system, eval...) stays inert.
    if (callable->kind == PV_CLASS || callable->kind == PV_OPAQUE)
        return new_opaque(vm, callable->u.cls.module, callable->u.cls.name);
    return new_opaque(vm, "?", pickle_kind_name(callable->kind));
}

// torch's persistent id: ('storage', <class torch.XStorage>, key, location, numel).
static pickle_value *persistent_load(pickle_vm *vm, const pickle_value *pid) {
    if (pid->kind != PV_TUPLE || pid->u.seq.count < 5 || pid->u.seq.items[0]->kind != PV_STR ||
        strcmp(pid->u.seq.items[0]->u.str.data, "storage")) {
        vm_error(vm, "unsupported persistent id (a %s); expected ('storage', class, key, location, numel)",
                 pickle_kind_name(pid->kind));
        return NULL;
    }
    pickle_value **a = pid->u.seq.items;
    if (a[1]->kind != PV_CLASS || a[2]->kind != PV_STR || a[3]->kind != PV_STR || a[4]->kind != PV_INT ||
        a[4]->u.i < 0) {
        vm_error(vm, "malformed storage persistent id");
        return NULL;
    }
    pickle_value *s = new_value(vm, PV_STORAGE);
    if (!s) return NULL;
    s->u.storage.class_name = a[1]->u.cls.name;
    s->u.storage.dtype = strcmp(a[1]->u.cls.module, "torch") ? -1 : pickle_storage_dtype(a[1]->u.cls.name);
    s->u.storage.key = a[2]->u.str.data;
    s->u.storage.location = a[3]->u.str.data;
    s->u.storage.numel = a[4]->u.i;
    return s;
}

static pickle_value *new_class(pickle_vm *vm, const char *module, size_t module_len, const char *name,
                               size_t name_len) {
    if (has_nul(module, module_len) || has_nul(name, name_len)) {
        vm_error(vm, "class name with a NUL byte");
        return NULL;
    }
    pickle_value *v = new_value(vm, PV_CLASS);
    if (!v) return NULL;
    v->u.cls.module = arena_strdup(vm, module, module_len);
    v->u.cls.name = v->u.cls.module ? arena_strdup(vm, name, name_len) : NULL;
    return v->u.cls.name ? v : NULL;
}

// Builds a tuple/list from stack[first..sp) and drops those items.
static pickle_value *collect(pickle_vm *vm, pickle_kind kind, size_t first) {
    pickle_value *v = new_value(vm, kind);
    if (!v) return NULL;
    for (size_t i = first; i < vm->sp; i++)
        if (seq_push(vm, v, vm->stack[i])) return NULL;
    vm->sp = first;
    return v;
}

// ---- the opcode loop ---------------------------------------------------------------------------

static dit_status run(pickle_vm *vm, pickle_value **result) {
    for (;;) {
        if (vm->p >= vm->end) {
            vm->op_pos = (size_t)(vm->p - vm->start);
            vm->op = 0;
            return vm_error(vm, "truncated: the pickle ends without STOP");
        }
        vm->op_pos = (size_t)(vm->p - vm->start);
        vm->op = *vm->p++;
        const char *line = NULL, *line2 = NULL;
        size_t len = 0, len2 = 0, first = 0;
        int64_t iv;
        pickle_value *a, *b, *c, *v;
        switch (vm->op) {
        case 0x80:   // PROTO
            if (need(vm, 1)) return DIT_ERR;
            if (*vm->p > 5) return vm_error(vm, "unsupported pickle protocol %d", *vm->p);
            vm->p++;
            break;
        case 0x95:   // FRAME: a length hint only
            if (need(vm, 8)) return DIT_ERR;
            vm->p += 8;
            break;
        case '.':    // STOP
            if (!(*result = pop(vm))) return DIT_ERR;
            return DIT_OK;
        case '(':    // MARK
            if (push_mark(vm)) return DIT_ERR;
            break;
        case '0':    // POP: an item, or a MARK when none is above it (as CPython does)
            if (vm->sp > stack_base(vm)) vm->sp--;
            else if (vm->mark_count) vm->mark_count--;
            else return vm_error(vm, "stack underflow");
            break;
        case '1':    // POP_MARK
            if (pop_mark(vm, &first)) return DIT_ERR;
            vm->sp = first;
            break;
        case '2':    // DUP
            if (!(a = top(vm)) || push(vm, a)) return DIT_ERR;
            break;
        case 'N': if (push(vm, new_value(vm, PV_NONE))) return DIT_ERR; break;
        case 0x88:   // NEWTRUE
        case 0x89:   // NEWFALSE
            if (!(v = new_value(vm, PV_BOOL))) return DIT_ERR;
            v->u.i = vm->op == 0x88;
            if (push(vm, v)) return DIT_ERR;
            break;
        case 'J':    // BININT: signed 32-bit
            if (need(vm, 4)) return DIT_ERR;
            {
                uint64_t u = read_le(vm, 4);
                if (push(vm, new_int(vm, (int64_t)u - (u >= 0x80000000u ? ((int64_t)1 << 32) : 0)))) return DIT_ERR;
            }
            break;
        case 'K':    // BININT1
            if (need(vm, 1) || push(vm, new_int(vm, (int64_t)read_le(vm, 1)))) return DIT_ERR;
            break;
        case 'M':    // BININT2
            if (need(vm, 2) || push(vm, new_int(vm, (int64_t)read_le(vm, 2)))) return DIT_ERR;
            break;
        case 0x8a:   // LONG1
            if (need(vm, 1) || push_long(vm, read_le(vm, 1))) return DIT_ERR;
            break;
        case 0x8b:   // LONG4: a signed length
            if (need(vm, 4)) return DIT_ERR;
            {
                uint64_t n = read_le(vm, 4);
                if (n >= 0x80000000u) return vm_error(vm, "negative LONG4 length");
                if (push_long(vm, n)) return DIT_ERR;
            }
            break;
        case 'I':    // INT (text); "00"/"01" are protocol-0 booleans
        case 'L':    // LONG (text)
            if (read_line(vm, &line, &len)) return DIT_ERR;
            if (vm->op == 'I' && len == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1')) {
                if (!(v = new_value(vm, PV_BOOL))) return DIT_ERR;
                v->u.i = line[1] == '1';
            } else {
                int r = parse_text_int(line, len, &iv);
                if (r < 0) return vm_error(vm, "malformed text integer");
                v = r ? new_int(vm, iv) : new_opaque(vm, "builtins", "int");
            }
            if (push(vm, v)) return DIT_ERR;
            break;
        case 'G':    // BINFLOAT: big-endian IEEE double
            if (need(vm, 8)) return DIT_ERR;
            {
                uint64_t bits = 0;
                for (int i = 0; i < 8; i++) bits = bits << 8 | vm->p[i];
                vm->p += 8;
                if (!(v = new_value(vm, PV_FLOAT))) return DIT_ERR;
                memcpy(&v->u.f, &bits, sizeof bits);
                if (push(vm, v)) return DIT_ERR;
            }
            break;
        case 'F':    // FLOAT (text)
            if (read_line(vm, &line, &len)) return DIT_ERR;
            {
                char buf[64], *endp;
                if (len == 0 || len >= sizeof buf) return vm_error(vm, "malformed text float");
                memcpy(buf, line, len);
                buf[len] = 0;
                double d = strtod(buf, &endp);
                if (*endp) return vm_error(vm, "malformed text float");
                if (!(v = new_value(vm, PV_FLOAT))) return DIT_ERR;
                v->u.f = d;
                if (push(vm, v)) return DIT_ERR;
            }
            break;
        case 0x8c: if (read_counted(vm, 1, PV_STR)) return DIT_ERR; break;     // SHORT_BINUNICODE
        case 'X':  if (read_counted(vm, 4, PV_STR)) return DIT_ERR; break;     // BINUNICODE
        case 0x8d: if (read_counted(vm, 8, PV_STR)) return DIT_ERR; break;     // BINUNICODE8
        case 'U':  if (read_counted(vm, 1, PV_STR)) return DIT_ERR; break;     // SHORT_BINSTRING
        case 'T':  if (read_counted(vm, 4, PV_STR)) return DIT_ERR; break;     // BINSTRING
        case 'C':  if (read_counted(vm, 1, PV_BYTES)) return DIT_ERR; break;   // SHORT_BINBYTES
        case 'B':  if (read_counted(vm, 4, PV_BYTES)) return DIT_ERR; break;   // BINBYTES
        case 0x8e: if (read_counted(vm, 8, PV_BYTES)) return DIT_ERR; break;   // BINBYTES8
        case 0x96: if (read_counted(vm, 8, PV_BYTES)) return DIT_ERR; break;   // BYTEARRAY8
        case 'V':    // UNICODE (raw-unicode-escape text; kept raw)
            if (read_line(vm, &line, &len) || push(vm, new_string(vm, PV_STR, line, len))) return DIT_ERR;
            break;
        case 'S':    // STRING: a quoted repr (escapes kept raw)
            if (read_line(vm, &line, &len)) return DIT_ERR;
            if (len < 2 || (line[0] != '\'' && line[0] != '"') || line[len - 1] != line[0])
                return vm_error(vm, "malformed STRING argument");
            if (push(vm, new_string(vm, PV_STR, line + 1, len - 2))) return DIT_ERR;
            break;
        case 0x97: return vm_error(vm, "out-of-band buffers (NEXT_BUFFER) are not supported");
        case 0x98: break;   // READONLY_BUFFER: no-op for us
        case 0x82: case 0x83: case 0x84:
            return vm_error(vm, "the copyreg extension registry (EXT1/2/4) is not supported");
        case ']': if (push(vm, new_value(vm, PV_LIST))) return DIT_ERR; break;   // EMPTY_LIST
        case ')': if (push(vm, new_value(vm, PV_TUPLE))) return DIT_ERR; break;  // EMPTY_TUPLE
        case '}': if (push(vm, new_value(vm, PV_DICT))) return DIT_ERR; break;   // EMPTY_DICT
        case 0x8f: if (push(vm, new_value(vm, PV_LIST))) return DIT_ERR; break;  // EMPTY_SET
        case 0x85: case 0x86: case 0x87: {   // TUPLE1, TUPLE2, TUPLE3
            size_t n = (size_t)(vm->op - 0x84);
            if (vm->sp - stack_base(vm) < n) return vm_error(vm, "stack underflow");
            if (push(vm, collect(vm, PV_TUPLE, vm->sp - n))) return DIT_ERR;
            break;
        }
        case 't':    // TUPLE
        case 'l':    // LIST
        case 0x91:   // FROZENSET
            if (pop_mark(vm, &first)) return DIT_ERR;
            if (push(vm, collect(vm, vm->op == 't' ? PV_TUPLE : PV_LIST, first))) return DIT_ERR;
            break;
        case 'd':    // DICT
            if (pop_mark(vm, &first)) return DIT_ERR;
            if ((vm->sp - first) % 2) return vm_error(vm, "DICT with an odd number of items");
            if (!(v = new_value(vm, PV_DICT))) return DIT_ERR;
            for (size_t i = first; i < vm->sp; i += 2)
                if (dict_push(vm, v, vm->stack[i], vm->stack[i + 1])) return DIT_ERR;
            vm->sp = first;
            if (push(vm, v)) return DIT_ERR;
            break;
        case 'a':    // APPEND
            if (!(a = pop(vm)) || !(v = top(vm))) return DIT_ERR;
            if (v->kind == PV_LIST) {
                if (seq_push(vm, v, a)) return DIT_ERR;
            } else if (v->kind != PV_OPAQUE) {
                return vm_error(vm, "APPEND to a %s", pickle_kind_name(v->kind));
            }
            break;
        case 'e':    // APPENDS
        case 0x90:   // ADDITEMS
            if (pop_mark(vm, &first) || !(v = mark_target(vm, first))) return DIT_ERR;
            if (v->kind == PV_LIST) {
                for (size_t i = first; i < vm->sp; i++)
                    if (seq_push(vm, v, vm->stack[i])) return DIT_ERR;
            } else if (v->kind != PV_OPAQUE) {
                return vm_error(vm, "APPENDS to a %s", pickle_kind_name(v->kind));
            }
            vm->sp = first;
            break;
        case 's':    // SETITEM
            if (!(b = pop(vm)) || !(a = pop(vm)) || !(v = top(vm))) return DIT_ERR;
            if (v->kind == PV_DICT) {
                if (dict_push(vm, v, a, b)) return DIT_ERR;
            } else if (v->kind != PV_OPAQUE) {
                return vm_error(vm, "SETITEM on a %s", pickle_kind_name(v->kind));
            }
            break;
        case 'u':    // SETITEMS
            if (pop_mark(vm, &first) || !(v = mark_target(vm, first))) return DIT_ERR;
            if ((vm->sp - first) % 2) return vm_error(vm, "SETITEMS with an odd number of items");
            if (v->kind == PV_DICT) {
                for (size_t i = first; i < vm->sp; i += 2)
                    if (dict_push(vm, v, vm->stack[i], vm->stack[i + 1])) return DIT_ERR;
            } else if (v->kind != PV_OPAQUE) {
                return vm_error(vm, "SETITEMS on a %s", pickle_kind_name(v->kind));
            }
            vm->sp = first;
            break;
        case 'p':    // PUT (text index)
            if (read_line(vm, &line, &len)) return DIT_ERR;
            if (parse_text_int(line, len, &iv) != 1 || iv < 0) return vm_error(vm, "malformed PUT index");
            if (memo_put(vm, (uint64_t)iv)) return DIT_ERR;
            break;
        case 'q': if (need(vm, 1) || memo_put(vm, read_le(vm, 1))) return DIT_ERR; break;   // BINPUT
        case 'r': if (need(vm, 4) || memo_put(vm, read_le(vm, 4))) return DIT_ERR; break;   // LONG_BINPUT
        case 0x94: if (memo_put(vm, vm->memo_count)) return DIT_ERR; break;                // MEMOIZE
        case 'g':    // GET (text index)
            if (read_line(vm, &line, &len)) return DIT_ERR;
            if (parse_text_int(line, len, &iv) != 1 || iv < 0) return vm_error(vm, "malformed GET index");
            if (memo_get(vm, (uint64_t)iv)) return DIT_ERR;
            break;
        case 'h': if (need(vm, 1) || memo_get(vm, read_le(vm, 1))) return DIT_ERR; break;   // BINGET
        case 'j': if (need(vm, 4) || memo_get(vm, read_le(vm, 4))) return DIT_ERR; break;   // LONG_BINGET
        case 'c':    // GLOBAL module\nname\n: a class reference, never imported
            if (read_line(vm, &line, &len) || read_line(vm, &line2, &len2)) return DIT_ERR;
            if (push(vm, new_class(vm, line, len, line2, len2))) return DIT_ERR;
            break;
        case 0x93:   // STACK_GLOBAL
            if (!(b = pop(vm)) || !(a = pop(vm))) return DIT_ERR;
            if (a->kind != PV_STR || b->kind != PV_STR) return vm_error(vm, "STACK_GLOBAL needs two strings");
            if (push(vm, new_class(vm, a->u.str.data, a->u.str.len, b->u.str.data, b->u.str.len))) return DIT_ERR;
            break;
        case 'R':    // REDUCE: callable(*args)
            if (!(b = pop(vm)) || !(a = pop(vm))) return DIT_ERR;
            if (push(vm, call(vm, a, b, 0))) return DIT_ERR;
            break;
        case 0x81:   // NEWOBJ: cls.__new__(cls, *args)
            if (!(b = pop(vm)) || !(a = pop(vm))) return DIT_ERR;
            if (push(vm, call(vm, a, b, 1))) return DIT_ERR;
            break;
        case 0x92:   // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
            if (!(c = pop(vm)) || !(b = pop(vm)) || !(a = pop(vm))) return DIT_ERR;
            if (push(vm, call(vm, a, b, 1))) return DIT_ERR;
            break;
        case 'i':    // INST module\nname\n with the arguments since MARK
            if (read_line(vm, &line, &len) || read_line(vm, &line2, &len2)) return DIT_ERR;
            if (pop_mark(vm, &first)) return DIT_ERR;
            if (!(a = new_class(vm, line, len, line2, len2)) || !(b = collect(vm, PV_TUPLE, first))) return DIT_ERR;
            if (push(vm, call(vm, a, b, 1))) return DIT_ERR;
            break;
        case 'o':    // OBJ: MARK cls args...
            if (pop_mark(vm, &first)) return DIT_ERR;
            if (vm->sp == first) return vm_error(vm, "OBJ without a class");
            a = vm->stack[first];
            if (!(b = collect(vm, PV_TUPLE, first + 1))) return DIT_ERR;
            vm->sp = first;
            if (push(vm, call(vm, a, b, 1))) return DIT_ERR;
            break;
        case 'b':    // BUILD: state is attached to nothing (setstate would run code)
            if (!pop(vm) || !top(vm)) return DIT_ERR;
            break;
        case 'Q':    // BINPERSID
            if (!(a = pop(vm)) || push(vm, persistent_load(vm, a))) return DIT_ERR;
            break;
        case 'P':    // PERSID (text): torch never writes it
            if (read_line(vm, &line, &len)) return DIT_ERR;
            if (!(a = new_string(vm, PV_STR, line, len)) || push(vm, persistent_load(vm, a))) return DIT_ERR;
            break;
        default:
            return vm_error(vm, "unknown opcode");
        }
    }
}

dit_status pickle_parse(const uint8_t *data, size_t size, const char *what, pickle_doc *doc) {
    memset(doc, 0, sizeof *doc);
    pickle_vm vm = {0};
    vm.start = vm.p = data;
    vm.end = data + size;
    vm.what = what;
    vm.doc = doc;
    // Picklers number memo entries from 0, one per PUT (>= 2 bytes each): an index beyond the pickle's
    // size is hostile, and bounding it bounds the memo table.
    vm.memo_limit = size < 1024 ? 1024 : size;
    // One opcode byte builds at most one value (under 256 bytes with its share of a container's doubling
    // array); strings are copied from the input. A pickle that asks for more is hostile: refuse it before
    // allocating, rather than at the absolute cap.
    vm.arena_limit = size > (PICKLE_MAX_ARENA - ((size_t)1 << 20)) / PICKLE_ARENA_PER_BYTE
                         ? PICKLE_MAX_ARENA
                         : PICKLE_ARENA_PER_BYTE * size + ((size_t)1 << 20);
    pickle_value *root = NULL;
    dit_status st = size ? run(&vm, &root) : dit_set_error("%s: empty pickle", what);
    free(vm.stack);
    free(vm.marks);
    free(vm.memo);
    if (st) {
        pickle_doc_free(doc);
        return st;
    }
    doc->root = root;
    return DIT_OK;
}

void pickle_doc_free(pickle_doc *doc) {
    pickle_block *b = doc->blocks;
    while (b) {
        pickle_block *next = b->next;
        free(b);
        b = next;
    }
    memset(doc, 0, sizeof *doc);
}

const char *pickle_kind_name(pickle_kind kind) {
    switch (kind) {
    case PV_NONE: return "None";
    case PV_BOOL: return "bool";
    case PV_INT: return "int";
    case PV_FLOAT: return "float";
    case PV_STR: return "str";
    case PV_BYTES: return "bytes";
    case PV_LIST: return "list";
    case PV_TUPLE: return "tuple";
    case PV_DICT: return "dict";
    case PV_CLASS: return "class reference";
    case PV_OPAQUE: return "opaque object";
    case PV_STORAGE: return "storage";
    case PV_TENSOR: return "tensor";
    }
    return "?";
}
