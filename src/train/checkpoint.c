// Training checkpoints: one safetensors file with the weights (official keys), "ema.", "adam_m." and "adam_v."
// copies of the parameter table, and the run's state in __metadata__["dit.train"] (docs/training.md). Files are
// written atomically; DIR/checkpoints/latest names the newest complete one and is replaced only after it is.
// dit_model_load prefers the "ema." keys, so `dit sample -m CHECKPOINT` samples the EMA weights.
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/tensors.h"
#include "train/train.h"

static const char *const prefixes[4] = {"", "ema.", "adam_m.", "adam_v."};

static char *train_json(const trainer *tr) {
    const train_hparams *hp = &tr->hp;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)tr->step);
    cJSON_AddNumberToObject(o, "epoch", (double)tr->epoch);
    cJSON_AddNumberToObject(o, "position", (double)tr->position);
    cJSON_AddNumberToObject(o, "seed", (double)tr->seed);
    cJSON_AddNumberToObject(o, "lr", hp->lr);
    cJSON_AddNumberToObject(o, "beta1", hp->beta1);
    cJSON_AddNumberToObject(o, "beta2", hp->beta2);
    cJSON_AddNumberToObject(o, "eps", hp->eps);
    cJSON_AddNumberToObject(o, "weight_decay", hp->weight_decay);
    cJSON_AddNumberToObject(o, "grad_clip", hp->grad_clip);
    cJSON_AddNumberToObject(o, "warmup", hp->warmup);
    cJSON_AddNumberToObject(o, "ema_decay", hp->ema_decay);
    cJSON_AddNumberToObject(o, "batch", hp->batch);
    cJSON_AddNumberToObject(o, "label_dropout", hp->label_dropout);
    cJSON_AddNumberToObject(o, "hflip", hp->hflip);
    cJSON_AddNumberToObject(o, "target_steps", (double)tr->target_steps);
    // the recipe (recipe.c); absent in older checkpoints, which mean DiT's recipe (the zero values)
    cJSON_AddStringToObject(o, "objective", dit_objective_name(hp->objective));
    cJSON_AddStringToObject(o, "time_sampling", train_time_sampling_names[hp->time_sampling]);
    cJSON_AddNumberToObject(o, "logit_mean", hp->logit_mean);
    cJSON_AddNumberToObject(o, "logit_std", hp->logit_std);
    cJSON_AddStringToObject(o, "loss_weight", train_loss_weight_names[hp->loss_weight]);
    cJSON_AddNumberToObject(o, "snr_gamma", hp->snr_gamma);
    cJSON_AddStringToObject(o, "ema_schedule", train_ema_schedule_names[hp->ema_schedule]);
    cJSON_AddNumberToObject(o, "ema_power", hp->ema_power);
    cJSON_AddStringToObject(o, "lr_schedule", train_lr_schedule_names[hp->lr_schedule]);
    cJSON_AddNumberToObject(o, "lr_min", hp->lr_min);
    cJSON_AddNumberToObject(o, "lr_decay_steps", (double)hp->lr_decay_steps);
    cJSON_AddStringToObject(o, "diffusion", hp->objective == DIT_OBJECTIVE_V_FLOW
                                                ? "flow matching: x_t = (1 - t) x0 + t noise, velocity noise - x0, "
                                                  "t = 0 data, t = 1 noise, timestep 1000 t"
                                                : "linear, 1000 steps, MSE + VB (learned range) / MSE (fixed)");
    cJSON_AddStringToObject(o, "rng", "Philox4x32-10 keyed by seed; counters are functions of (step, slot) and "
                                      "(epoch, index): step + data position are the whole random state");
    if (tr->data) {
        cJSON_AddStringToObject(o, "data", tr->data->source);
        cJSON_AddNumberToObject(o, "data_count", tr->data->count);
        cJSON_AddNumberToObject(o, "image_size", tr->data->kind == DATA_LATENT_CACHE ? 0 : tr->data->size);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

dit_status checkpoint_save(const trainer *tr, const char *path) {
    const dit_model *m = tr->model;
    char config_json[512];
    if (dit_config_to_json(&m->cfg, config_json, sizeof config_json)) return DIT_ERR;
    const int P = m->num_params;
    tensor_out *outs = dit_calloc(4 * (size_t)P, sizeof *outs);
    char **names = dit_calloc(4 * (size_t)P, sizeof *names);
    dit_status st = outs && names ? DIT_OK : DIT_ERR;
    const float *buffers[4] = {m->params, tr->ema, tr->adam_m, tr->adam_v};
    for (int k = 0; k < 4 && st == DIT_OK; k++)
        for (int i = 0; i < P; i++) {
            const param_entry *e = &m->table[i];
            tensor_out *o = &outs[k * P + i];
            size_t len = strlen(prefixes[k]) + strlen(e->name) + 1;
            if (!(names[k * P + i] = dit_malloc(len))) {
                st = DIT_ERR;
                break;
            }
            snprintf(names[k * P + i], len, "%s%s", prefixes[k], e->name);
            o->name = names[k * P + i];
            o->dtype = DT_F32;
            o->ndim = e->ndim;
            memcpy(o->shape, e->shape, sizeof e->shape);
            o->data = buffers[k] + e->offset;
        }
    char *names_json = NULL;
    if (st == DIT_OK && m->class_names) {
        cJSON *list = cJSON_CreateArray();
        for (int i = 0; i < m->cfg.num_classes; i++) cJSON_AddItemToArray(list, cJSON_CreateString(m->class_names[i]));
        names_json = cJSON_PrintUnformatted(list);
        cJSON_Delete(list);
    }
    char *train = st == DIT_OK ? train_json(tr) : NULL;
    const char *keys[5] = {"format", "dit.config", "dit.train"}, *values[5] = {"dit", config_json, train};
    int num_keys = 3;
    if (names_json) keys[num_keys] = "dit.class_names", values[num_keys++] = names_json;
    if (m->objective != DIT_OBJECTIVE_EPS)
        keys[num_keys] = "dit.objective", values[num_keys++] = dit_objective_name(m->objective);
    if (st == DIT_OK) st = safetensors_write(path, outs, 4 * P, keys, values, num_keys);
    for (int i = 0; names && i < 4 * P; i++) free(names[i]);
    free(names);
    free(outs);
    free(names_json);
    free(train);
    return st;
}

// An optional name field of a list (recipe.c); absent = entry 0. Returns 0 for a name not in the list.
static int json_choice(const cJSON *o, const char *name, const char *const *names, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *out = 0;
    if (!v) return 1;
    *out = cJSON_IsString(v) ? train_name_index(names, v->valuestring) : -1;
    return *out >= 0;
}

static int json_number(const cJSON *o, const char *name, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}

trainer *checkpoint_load(const char *path, const train_data *data, char **data_spec) {
    // the config, class names and EMA weights through the model loader, then the rest from the file itself
    dit_model *m = dit_model_load(path, NULL);
    if (!m) return NULL;
    tensor_file f = {0};
    trainer *tr = NULL;
    cJSON *o = NULL;
    if (safetensors_read(path, &f)) goto fail;
    const char *json = tensor_file_meta(&f, "dit.train");
    o = json ? cJSON_Parse(json) : NULL;
    if (!o) {
        dit_set_error("%s: not a training checkpoint (no dit.train metadata)", path);
        goto fail;
    }
    train_hparams hp;
    train_hparams_default(&hp);
    double step = 0, epoch = 0, position = 0, seed = 0, warmup = 0, batch = 0, hflip = 0, target = 0;
    int ok = json_number(o, "step", &step) & json_number(o, "epoch", &epoch) & json_number(o, "position", &position) &
             json_number(o, "seed", &seed) & json_number(o, "lr", &hp.lr) & json_number(o, "beta1", &hp.beta1) &
             json_number(o, "beta2", &hp.beta2) & json_number(o, "eps", &hp.eps) &
             json_number(o, "weight_decay", &hp.weight_decay) & json_number(o, "grad_clip", &hp.grad_clip) &
             json_number(o, "warmup", &warmup) & json_number(o, "ema_decay", &hp.ema_decay) &
             json_number(o, "batch", &batch) & json_number(o, "label_dropout", &hp.label_dropout) &
             json_number(o, "hflip", &hflip);
    json_number(o, "target_steps", &target);
    if (!ok || step < 0 || epoch < 0 || position < 0 || batch < 1 || batch > 1 << 20) {
        dit_set_error("%s: dit.train metadata lacks a field or has an impossible value", path);
        goto fail;
    }
    hp.warmup = (int)warmup, hp.batch = (int)batch, hp.hflip = (int)hflip;
    // the recipe: optional (older checkpoints are DiT's recipe)
    static const char *const objectives[] = {"eps", "v-flow", NULL};
    int objective, time_sampling, loss_weight, ema_schedule, lr_schedule;
    double decay_steps = 0;
    ok = json_choice(o, "objective", objectives, &objective) &
         json_choice(o, "time_sampling", train_time_sampling_names, &time_sampling) &
         json_choice(o, "loss_weight", train_loss_weight_names, &loss_weight) &
         json_choice(o, "ema_schedule", train_ema_schedule_names, &ema_schedule) &
         json_choice(o, "lr_schedule", train_lr_schedule_names, &lr_schedule);
    json_number(o, "logit_mean", &hp.logit_mean);
    json_number(o, "logit_std", &hp.logit_std);
    json_number(o, "snr_gamma", &hp.snr_gamma);
    json_number(o, "ema_power", &hp.ema_power);
    json_number(o, "lr_min", &hp.lr_min);
    json_number(o, "lr_decay_steps", &decay_steps);
    if (!ok || (dit_objective)objective != m->objective) {
        dit_set_error("%s: dit.train has an unknown recipe name, or its objective differs from dit.objective", path);
        goto fail;
    }
    hp.objective = (dit_objective)objective, hp.time_sampling = (train_time_sampling)time_sampling;
    hp.loss_weight = (train_loss_weight)loss_weight, hp.ema_schedule = (train_ema_schedule)ema_schedule;
    hp.lr_schedule = (train_lr_schedule)lr_schedule, hp.lr_decay_steps = (int64_t)decay_steps;
    if (!(tr = trainer_wrap(m, &hp, (uint64_t)seed, data))) {
        dit_prefix_error("%s", path);
        goto fail;
    }
    m = NULL;   // owned by the trainer now
    tr->step = (int64_t)step, tr->epoch = (int64_t)epoch, tr->position = (int64_t)position;
    tr->target_steps = (int64_t)target;
    float *buffers[4] = {tr->model->params, tr->ema, tr->adam_m, tr->adam_v};
    char key[PARAM_NAME_MAX + 16];
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < tr->model->num_params; i++) {
            const param_entry *e = &tr->model->table[i];
            snprintf(key, sizeof key, "%s%s", prefixes[k], e->name);
            const tensor_view *t = tensor_file_find(&f, key);
            if (!t || t->dtype != DT_F32 || tensor_numel(t) != (int64_t)e->numel) {
                dit_set_error("%s: tensor %s is missing or is not F32 with %zu values", path, key, e->numel);
                goto fail;
            }
            memcpy(buffers[k] + e->offset, t->data, e->numel * sizeof(float));
        }
    if (data_spec) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "data");
        *data_spec = NULL;
        if (cJSON_IsString(d) && !(*data_spec = dit_strdup(d->valuestring))) goto fail;
    }
    cJSON_Delete(o);
    tensor_file_free(&f);
    return tr;
fail:
    cJSON_Delete(o);
    tensor_file_free(&f);
    trainer_free(tr);
    dit_model_free(m);
    return NULL;
}

static dit_status make_dir(const char *path) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return DIT_OK;
    return dit_set_error("%s: cannot create the folder (%s)", path, strerror(errno));
}

// Checkpoint file names are 7+ digits + ".safetensors"; returns the step or -1.
static long long checkpoint_step_of(const char *name) {
    size_t n = strlen(name), digits = 0;
    while (digits < n && name[digits] >= '0' && name[digits] <= '9') digits++;
    if (digits < 7 || strcmp(name + digits, ".safetensors")) return -1;
    return strtoll(name, NULL, 10);
}

static int compare_desc(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x < y) - (x > y);
}

// Steps of the checkpoint files in cdir, newest first: *count entries in *steps (malloc'd; none when the
// folder cannot be read). DIT_ERR when out of memory.
static dit_status list_checkpoints(const char *cdir, long long **steps_out, int *count) {
    *steps_out = NULL;
    *count = 0;
    DIR *dp = opendir(cdir);
    if (!dp) return DIT_OK;
    long long *steps = NULL;
    struct dirent *e;
    while ((e = readdir(dp))) {
        long long s = checkpoint_step_of(e->d_name);
        if (s < 0) continue;
        long long *grown = dit_realloc(steps, (*count + 1) * sizeof *steps);
        if (!grown) {
            closedir(dp);
            free(steps);
            *count = 0;
            return DIT_ERR;
        }
        steps = grown;
        steps[(*count)++] = s;
    }
    closedir(dp);
    if (*count) qsort(steps, *count, sizeof *steps, compare_desc);
    *steps_out = steps;
    return DIT_OK;
}

dit_status checkpoint_save_run(const trainer *tr, const char *run_dir, int keep, char *saved_path, size_t n) {
    char cdir[4096], path[4200], latest[4200];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", run_dir);
    if (make_dir(run_dir) || make_dir(cdir)) return DIT_ERR;
    snprintf(path, sizeof path, "%s/%07lld.safetensors", cdir, (long long)tr->step);
    if (checkpoint_save(tr, path)) return DIT_ERR;
    // only now, with the file complete and renamed into place, move the pointer
    snprintf(latest, sizeof latest, "%s/latest", cdir);
    atomic_file a;
    if (atomic_file_open(&a, latest)) return DIT_ERR;
    fprintf(a.f, "%07lld.safetensors\n", (long long)tr->step);
    if (atomic_file_commit(&a)) return DIT_ERR;
    if (saved_path) snprintf(saved_path, n, "%s", path);
    if (keep > 0) {
        int count;
        long long *steps;
        DIT_TRY(list_checkpoints(cdir, &steps, &count));
        for (int i = keep; i < count; i++) {
            if (steps[i] == tr->step) continue;
            snprintf(path, sizeof path, "%s/%07lld.safetensors", cdir, steps[i]);
            unlink(path);
        }
        free(steps);
    }
    return DIT_OK;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// A checkpoint is usable when its safetensors header and sizes check out and it has dit.train metadata.
// Running out of memory while reading it says nothing about the file: *out_of_memory = 1 then.
static int usable(const char *path, int *out_of_memory) {
    tensor_file f = {0};
    if (safetensors_read(path, &f)) {
        *out_of_memory = dit_error_is_out_of_memory();
        return 0;
    }
    int ok = tensor_file_meta(&f, "dit.train") != NULL;
    tensor_file_free(&f);
    return ok;
}

dit_status checkpoint_find_latest(const char *dir, char *path, size_t n) {
    int out_of_memory = 0;
    if (!is_dir(dir)) {
        if (!usable(dir, &out_of_memory)) {
            if (out_of_memory) return DIT_ERR;
            dit_prefix_error("--resume %s: not a usable checkpoint", dir);
            return DIT_ERR;
        }
        snprintf(path, n, "%s", dir);
        return DIT_OK;
    }
    char cdir[4096], pointer[4200], name[256] = "";
    snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
    if (!is_dir(cdir)) snprintf(cdir, sizeof cdir, "%s", dir);
    snprintf(pointer, sizeof pointer, "%s/latest", cdir);
    FILE *f = fopen(pointer, "r");
    if (f) {
        if (!fgets(name, sizeof name, f)) name[0] = 0;
        fclose(f);
        name[strcspn(name, "\r\n")] = 0;
        if (checkpoint_step_of(name) >= 0) {
            snprintf(path, n, "%s/%s", cdir, name);
            if (usable(path, &out_of_memory)) return DIT_OK;
            if (out_of_memory) return DIT_ERR;
        }
    }
    // no pointer, or it names a damaged file: the newest checkpoint that reads
    int count;
    long long *steps;
    DIT_TRY(list_checkpoints(cdir, &steps, &count));
    for (int i = 0; i < count; i++) {
        snprintf(path, n, "%s/%07lld.safetensors", cdir, steps[i]);
        if (usable(path, &out_of_memory) || out_of_memory) {
            free(steps);
            return out_of_memory ? DIT_ERR : DIT_OK;
        }
    }
    free(steps);
    return dit_set_error("--resume %s: no usable checkpoint in %s", dir, cdir);
}
