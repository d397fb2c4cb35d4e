// Parameters from the seeded formula of docs/testing.md, reproduced bit for bit by tests/ref/synthetic.py:
// golden tests store inputs and outputs only, never weights.
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "models/dit_model.h"
#include "models/synthetic.h"

float synthetic_uniform(uint32_t i, uint32_t k, uint32_t seed) {
    uint32_t h = i * 2654435761u + (k + 1u) * 40503u + seed * 97531u;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

void dit_fill_synthetic(dit_model *m, uint32_t seed) {
    for (int k = 0; k < m->num_params; k++) {
        const param_entry *e = &m->table[k];
        if (!strcmp(e->name, "pos_embed")) continue;
        float scale;
        if (!strcmp(e->name, "y_embedder.embedding_table.weight"))
            scale = 1.0f;
        else if (e->ndim >= 2)
            scale = 1.0f / sqrtf((float)(e->numel / (size_t)e->shape[0]));
        else
            scale = 0.1f;
        float *dst = m->params + e->offset;
        DIT_CHECK(e->numel <= UINT32_MAX);
        for (size_t i = 0; i < e->numel; i++) dst[i] = scale * synthetic_uniform((uint32_t)i, (uint32_t)k, seed);
    }
}

dit_model *dit_model_synthetic(const dit_config *cfg, uint32_t seed) {
    dit_model *m = dit_model_create(cfg);
    if (m) dit_fill_synthetic(m, seed);
    return m;
}
