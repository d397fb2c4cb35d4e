// Tensor views shared by every file reader: dtype sizes and names (safetensors spellings), lookup,
// release, and conversion to float32. Data may be unaligned inside a mapping, so reads go through memcpy.
#include "io/tensors.h"

#include <string.h>
#include <sys/mman.h>

#include "base/error.h"

size_t dtype_size(dit_dtype dt) {
    switch (dt) {
    case DT_F32: return 4;
    case DT_F16: return 2;
    case DT_BF16: return 2;
    case DT_F64: return 8;
    case DT_U8: return 1;
    case DT_I8: return 1;
    case DT_I16: return 2;
    case DT_I32: return 4;
    case DT_I64: return 8;
    case DT_BOOL: return 1;
    }
    DIT_CHECK(!"unknown dtype");
    return 0;
}

const char *dtype_name(dit_dtype dt) {
    switch (dt) {
    case DT_F32: return "F32";
    case DT_F16: return "F16";
    case DT_BF16: return "BF16";
    case DT_F64: return "F64";
    case DT_U8: return "U8";
    case DT_I8: return "I8";
    case DT_I16: return "I16";
    case DT_I32: return "I32";
    case DT_I64: return "I64";
    case DT_BOOL: return "BOOL";
    }
    return "?";
}

int64_t tensor_numel(const tensor_view *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const tensor_view *tensor_file_find(const tensor_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *tensor_file_meta(const tensor_file *f, const char *key) {
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

void tensor_file_free(tensor_file *f) {
    free(f->path);
    for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    for (int i = 0; i < f->owned_count; i++) free(f->owned[i]);
    free(f->owned);
    if (f->map) munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

int tensor_is_float(const tensor_view *t) {
    return t->dtype == DT_F32 || t->dtype == DT_F16 || t->dtype == DT_BF16 || t->dtype == DT_F64;
}

// IEEE half → single: rebias the exponent (15 → 127); subnormal halves become normal floats, so
// normalise the mantissa; exponent 31 is inf/nan (keep the payload, shifted into place).
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | mantissa << 13;
    } else if (exponent != 0) {
        bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        // value = mantissa * 2^-24; shift the leading one up to bit 10 and lower the exponent to match
        int e = 127 - 15 + 1;
        while (!(mantissa & 0x400)) {
            mantissa <<= 1;
            e--;
        }
        bits = sign | (uint32_t)e << 23 | (mantissa & 0x3FF) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// single → IEEE half, rounding to nearest even; overflow → inf, tiny values → subnormals or zero.
static uint16_t float_to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    int exponent = (int)((bits >> 23) & 0xFF);
    uint32_t mantissa = bits & 0x7FFFFF;
    if (exponent == 0xFF) return sign | 0x7C00 | (mantissa ? 0x200 | (mantissa >> 13) : 0);
    int e = exponent - 127 + 15;
    if (e >= 31) return sign | 0x7C00;
    if (e <= 0) {
        if (e < -10) return sign;
        mantissa |= 0x800000;   // the implicit one, then shift down to units of 2^-24
        int shift = 14 - e;
        uint32_t half_mantissa = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half_mantissa & 1))) half_mantissa++;
        return sign | (uint16_t)half_mantissa;
    }
    uint16_t h = sign | (uint16_t)(e << 10) | (uint16_t)(mantissa >> 13);
    uint32_t rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;   // a carry into the exponent is still right
    return h;
}

// single → bfloat16 (the top 16 bits), rounding to nearest even; NaNs stay quiet NaNs.
static uint16_t float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((bits >> 16) | 0x40);
    return (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

dit_status tensor_from_f32(dit_dtype dtype, const float *src, int64_t n, void *dst) {
    uint8_t *out = dst;
    switch (dtype) {
    case DT_F32:
        memcpy(out, src, (size_t)n * 4);
        return DIT_OK;
    case DT_F16:
    case DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = dtype == DT_F16 ? float_to_half(src[i]) : float_to_bf16(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return DIT_OK;
    default:
        return dit_set_error("cannot store float32 values as %s", dtype_name(dtype));
    }
}

void tensor_to_f32(const tensor_view *t, float *dst) {
    int64_t n = tensor_numel(t);
    const uint8_t *src = t->data;
    switch (t->dtype) {
    case DT_F32:
        memcpy(dst, src, (size_t)n * 4);
        return;
    case DT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = half_to_float(h);
        }
        return;
    case DT_BF16:   // bfloat16 is the top half of a float32
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return;
#define CONVERT(type, size)                                \
    for (int64_t i = 0; i < n; i++) {                      \
        type v;                                            \
        memcpy(&v, src + (size) * i, (size));              \
        dst[i] = (float)v;                                 \
    }                                                      \
    return;
    case DT_F64: CONVERT(double, 8)
    case DT_U8: CONVERT(uint8_t, 1)
    case DT_I8: CONVERT(int8_t, 1)
    case DT_I16: CONVERT(int16_t, 2)
    case DT_I32: CONVERT(int32_t, 4)
    case DT_I64: CONVERT(int64_t, 8)
    case DT_BOOL:
        for (int64_t i = 0; i < n; i++) dst[i] = src[i] ? 1.0f : 0.0f;
        return;
#undef CONVERT
    }
    DIT_CHECK(!"unknown dtype");
}
