// ZIP reading over a memory buffer and a writer of stored members, following PKWARE APPNOTE 6.3
// (§4.3.12 central header, §4.3.14-16 zip64 end records, §4.5.3 zip64 extra field). The buffer is
// untrusted: every offset and size is checked against it before it is used.
#include "io/zip.h"

#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "base/error.h"

enum {
    SIG_LOCAL = 0x04034b50,
    SIG_CENTRAL = 0x02014b50,
    SIG_EOCD = 0x06054b50,
    SIG_ZIP64_EOCD = 0x06064b50,
    SIG_ZIP64_LOCATOR = 0x07064b50,
    LOCAL_HEADER_SIZE = 30,
    CENTRAL_HEADER_SIZE = 46,
    EOCD_SIZE = 22,
    ZIP64_EOCD_SIZE = 56,
    ZIP64_LOCATOR_SIZE = 20,
    MAX_COMMENT = 0xFFFF,
    EXTRA_ZIP64 = 0x0001,
};

// Deflate cannot expand data by more than about 1032:1; a declared size beyond that is a lie, and
// refusing it keeps a hostile file from making us allocate terabytes.
#define DEFLATE_MAX_RATIO 1032u

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

// 1 when [offset, offset + length) lies inside a buffer of `size` bytes (no overflow possible).
static int in_bounds(uint64_t offset, uint64_t length, uint64_t size) {
    return offset <= size && length <= size - offset;
}

// The End Of Central Directory record: the last signature within the final 22 + 65535 bytes whose
// comment length reaches exactly to the end of the buffer (or, failing that, stays inside it).
static int64_t find_eocd(const uint8_t *data, size_t size) {
    if (size < EOCD_SIZE) return -1;
    size_t last = size - EOCD_SIZE;
    size_t first = last > MAX_COMMENT ? last - MAX_COMMENT : 0;
    int64_t loose = -1;
    for (size_t pos = last + 1; pos-- > first;) {
        if (get_u32(data + pos) != SIG_EOCD) continue;
        size_t comment = get_u16(data + pos + 20);
        if (pos + EOCD_SIZE + comment == size) return (int64_t)pos;
        if (loose < 0 && pos + EOCD_SIZE + comment <= size) loose = (int64_t)pos;
    }
    return loose;
}

typedef struct {
    uint64_t count;
    uint64_t cd_offset;
    uint64_t cd_size;
    uint64_t cd_end_limit;   // the central directory must end before the end records
} central_directory;

static dit_status read_end_records(const uint8_t *data, size_t size, const char *path, central_directory *cd) {
    int64_t found = find_eocd(data, size);
    if (found < 0) return dit_set_error("%s: not a zip archive (no end of central directory record)", path);
    size_t eocd = (size_t)found;
    const uint8_t *e = data + eocd;
    uint16_t disk = get_u16(e + 4), cd_disk = get_u16(e + 6);
    uint16_t disk_entries = get_u16(e + 8);
    cd->count = get_u16(e + 10);
    cd->cd_size = get_u32(e + 12);
    cd->cd_offset = get_u32(e + 16);
    cd->cd_end_limit = eocd;

    // A zip64 locator sits right before the EOCD; when present its record overrides the 16/32-bit fields.
    if (eocd >= ZIP64_LOCATOR_SIZE && get_u32(data + eocd - ZIP64_LOCATOR_SIZE) == SIG_ZIP64_LOCATOR) {
        const uint8_t *loc = data + eocd - ZIP64_LOCATOR_SIZE;
        uint64_t record = get_u64(loc + 8);
        if (get_u32(loc + 4) != 0 || get_u32(loc + 16) > 1)
            return dit_set_error("%s: multi-disk zip archives are not supported", path);
        if (!in_bounds(record, ZIP64_EOCD_SIZE, eocd - ZIP64_LOCATOR_SIZE))
            return dit_set_error("%s: zip64 end of central directory at offset %llu is outside the file",
                                 path, (unsigned long long)record);
        const uint8_t *z = data + record;
        if (get_u32(z) != SIG_ZIP64_EOCD)
            return dit_set_error("%s: bad zip64 end of central directory signature", path);
        if (get_u32(z + 16) != 0 || get_u32(z + 20) != 0 || get_u64(z + 24) != get_u64(z + 32))
            return dit_set_error("%s: multi-disk zip archives are not supported", path);
        cd->count = get_u64(z + 32);
        cd->cd_size = get_u64(z + 40);
        cd->cd_offset = get_u64(z + 48);
        cd->cd_end_limit = record;
    } else {
        if (disk != 0 || cd_disk != 0 || disk_entries != cd->count)
            return dit_set_error("%s: multi-disk zip archives are not supported", path);
        if (cd->count == 0xFFFF || cd->cd_size == 0xFFFFFFFF || cd->cd_offset == 0xFFFFFFFF)
            return dit_set_error("%s: zip64 archive without its zip64 end of central directory locator", path);
    }
    if (!in_bounds(cd->cd_offset, cd->cd_size, cd->cd_end_limit))
        return dit_set_error("%s: central directory (offset %llu, %llu bytes) lies outside the file", path,
                             (unsigned long long)cd->cd_offset, (unsigned long long)cd->cd_size);
    if (cd->count > cd->cd_size / CENTRAL_HEADER_SIZE || cd->count > INT_MAX)
        return dit_set_error("%s: zip claims %llu entries in a %llu-byte central directory", path,
                             (unsigned long long)cd->count, (unsigned long long)cd->cd_size);
    return DIT_OK;
}

// Fields set to all-ones in the central header are stored, in this order, in the zip64 extra field.
static dit_status read_zip64_extra(const uint8_t *extra, size_t extra_len, uint64_t *size,
                                   uint64_t *compressed_size, uint64_t *local_offset, const char *path,
                                   const char *name) {
    int need_size = *size == 0xFFFFFFFF, need_csize = *compressed_size == 0xFFFFFFFF;
    int need_offset = *local_offset == 0xFFFFFFFF;
    if (!need_size && !need_csize && !need_offset) return DIT_OK;
    size_t pos = 0;
    while (pos + 4 <= extra_len) {
        uint16_t id = get_u16(extra + pos), len = get_u16(extra + pos + 2);
        if (len > extra_len - pos - 4) break;
        if (id == EXTRA_ZIP64) {
            const uint8_t *f = extra + pos + 4;
            size_t need = 8u * (size_t)(need_size + need_csize + need_offset);
            if (len < need) break;
            if (need_size) *size = get_u64(f), f += 8;
            if (need_csize) *compressed_size = get_u64(f), f += 8;
            if (need_offset) *local_offset = get_u64(f);
            return DIT_OK;
        }
        pos += 4 + (size_t)len;
    }
    return dit_set_error("%s: member '%s' needs a zip64 extra field and has no valid one", path, name);
}

static dit_status read_central_entry(const zip_archive *z, const uint8_t *h, size_t remaining,
                                     uint64_t data_limit, zip_entry *entry, size_t *header_size) {
    const char *path = z->path;
    if (remaining < CENTRAL_HEADER_SIZE || get_u32(h) != SIG_CENTRAL)
        return dit_set_error("%s: corrupt zip central directory (bad entry header)", path);
    uint16_t flags = get_u16(h + 8);
    size_t name_len = get_u16(h + 28), extra_len = get_u16(h + 30), comment_len = get_u16(h + 32);
    size_t total = CENTRAL_HEADER_SIZE + name_len + extra_len + comment_len;
    if (total > remaining) return dit_set_error("%s: corrupt zip central directory (entry overruns it)", path);
    *header_size = total;

    // Names are not NUL-terminated in the file; a NUL inside one would make two names compare equal.
    const uint8_t *name_bytes = h + CENTRAL_HEADER_SIZE;
    if (memchr(name_bytes, 0, name_len)) return dit_set_error("%s: zip member name contains a NUL byte", path);
    entry->name = dit_malloc(name_len + 1);
    if (!entry->name) return DIT_ERR;
    memcpy(entry->name, name_bytes, name_len);
    entry->name[name_len] = '\0';

    entry->method = get_u16(h + 10);
    entry->crc32 = get_u32(h + 16);
    entry->compressed_size = get_u32(h + 20);
    entry->size = get_u32(h + 24);
    uint64_t local = get_u32(h + 42);
    if (read_zip64_extra(name_bytes + name_len, extra_len, &entry->size, &entry->compressed_size, &local,
                         path, entry->name) != DIT_OK)
        return DIT_ERR;
    if (flags & 1) return dit_set_error("%s: member '%s' is encrypted", path, entry->name);
    if (entry->method == 0 && entry->compressed_size != entry->size)
        return dit_set_error("%s: stored member '%s' has compressed size %llu but size %llu", path, entry->name,
                             (unsigned long long)entry->compressed_size, (unsigned long long)entry->size);

    // The local header repeats name and extra with its own lengths; those decide where the data starts.
    if (!in_bounds(local, LOCAL_HEADER_SIZE, data_limit) || get_u32(z->data + local) != SIG_LOCAL)
        return dit_set_error("%s: member '%s' has no local header at offset %llu", path, entry->name,
                             (unsigned long long)local);
    const uint8_t *lh = z->data + local;
    uint64_t data_offset = local + LOCAL_HEADER_SIZE + get_u16(lh + 26) + get_u16(lh + 28);
    if (!in_bounds(data_offset, entry->compressed_size, data_limit))
        return dit_set_error("%s: member '%s' (%llu bytes at offset %llu) runs past the member data", path,
                             entry->name, (unsigned long long)entry->compressed_size,
                             (unsigned long long)data_offset);
    entry->data_offset = data_offset;
    return DIT_OK;
}

dit_status zip_open_buffer(zip_archive *z, const uint8_t *data, size_t size, const char *path) {
    memset(z, 0, sizeof *z);
    z->data = data;
    z->size = size;
    z->path = path;
    central_directory cd = {0};
    if (read_end_records(data, size, path, &cd) != DIT_OK) return DIT_ERR;

    z->entries = dit_calloc(cd.count ? (size_t)cd.count : 1, sizeof *z->entries);
    if (!z->entries) return DIT_ERR;
    const uint8_t *p = data + cd.cd_offset;
    size_t remaining = (size_t)cd.cd_size;
    for (uint64_t i = 0; i < cd.count; i++) {
        size_t header_size = 0;
        zip_entry *entry = &z->entries[z->count++];   // counted first so zip_close frees its name
        // Member data lives before the central directory.
        if (read_central_entry(z, p, remaining, cd.cd_offset, entry, &header_size) != DIT_OK) {
            zip_close(z);
            return DIT_ERR;
        }
        p += header_size;
        remaining -= header_size;
    }
    return DIT_OK;
}

const zip_entry *zip_find(const zip_archive *z, const char *name) {
    for (int i = 0; i < z->count; i++)
        if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
    return NULL;
}

// zlib counts lengths in uInt; feed larger buffers in pieces.
static uint32_t crc32_of(const uint8_t *data, uint64_t size) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (size > 0) {
        uInt piece = size > (1u << 30) ? (1u << 30) : (uInt)size;
        crc = crc32(crc, data, piece);
        data += piece;
        size -= piece;
    }
    return (uint32_t)crc;
}

static dit_status inflate_member(const zip_archive *z, const zip_entry *e, uint8_t **out) {
    if (e->size > e->compressed_size * DEFLATE_MAX_RATIO + 1024 || e->size > SIZE_MAX - 1)
        return dit_set_error("%s: member '%s' claims %llu bytes from %llu compressed bytes", z->path, e->name,
                             (unsigned long long)e->size, (unsigned long long)e->compressed_size);
    uint8_t *buffer = dit_try_malloc((size_t)e->size + 1, "an inflated member");   // +1 detects excess output
    if (!buffer) {
        dit_prefix_error("%s: %s", z->path, e->name);
        return DIT_ERR;
    }
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -15) != Z_OK) {   // negative window bits: raw deflate, no zlib header
        free(buffer);
        return dit_set_error("%s: zlib initialisation failed", z->path);
    }
    const uint8_t *in = z->data + e->data_offset;
    uint64_t in_left = e->compressed_size, out_done = 0, out_cap = e->size + 1;
    int rc;
    for (;;) {
        if (s.avail_in == 0 && in_left > 0) {
            s.next_in = (Bytef *)in;   // zlib does not write through next_in
            s.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            in += s.avail_in;
            in_left -= s.avail_in;
        }
        if (s.avail_out == 0 && out_done < out_cap) {
            s.next_out = buffer + out_done;
            s.avail_out = out_cap - out_done > (1u << 30) ? (1u << 30) : (uInt)(out_cap - out_done);
        }
        rc = inflate(&s, Z_NO_FLUSH);
        out_done = (uint64_t)(s.next_out - buffer);
        if (rc == Z_STREAM_END) break;
        if (rc == Z_OK) continue;
        // Z_BUF_ERROR only means "no progress": go on if a refill is possible, otherwise the input
        // ended early or the output overran the declared size.
        int can_refill = (s.avail_in == 0 && in_left > 0) || (s.avail_out == 0 && out_done < out_cap);
        if (rc == Z_BUF_ERROR && can_refill) continue;
        break;
    }
    int ended = rc == Z_STREAM_END;
    inflateEnd(&s);
    if (!ended || out_done != e->size) {
        free(buffer);
        if (out_done > e->size)
            return dit_set_error("%s: member '%s' inflates to more than its declared %llu bytes", z->path,
                                 e->name, (unsigned long long)e->size);
        if (rc == Z_DATA_ERROR)
            return dit_set_error("%s: member '%s' has corrupt deflate data", z->path, e->name);
        return dit_set_error("%s: member '%s' inflates to %llu bytes, expected %llu", z->path, e->name,
                             (unsigned long long)out_done, (unsigned long long)e->size);
    }
    *out = buffer;
    return DIT_OK;
}

dit_status zip_entry_data(const zip_archive *z, const zip_entry *e, const uint8_t **data, uint8_t **owned) {
    *data = NULL;
    *owned = NULL;
    const uint8_t *bytes = NULL;
    uint8_t *buffer = NULL;
    if (e->method == 0) {
        bytes = z->data + e->data_offset;   // bounds were checked when the archive was opened
    } else if (e->method == 8) {
        if (inflate_member(z, e, &buffer) != DIT_OK) return DIT_ERR;
        bytes = buffer;
    } else {
        return dit_set_error("%s: member '%s' uses compression method %d (only stored and deflate are supported)",
                             z->path, e->name, e->method);
    }
    uint32_t crc = crc32_of(bytes, e->size);
    if (crc != e->crc32) {
        free(buffer);
        return dit_set_error("%s: member '%s' fails its CRC check (computed %08x, recorded %08x)", z->path,
                             e->name, (unsigned)crc, (unsigned)e->crc32);
    }
    *data = bytes;
    *owned = buffer;
    return DIT_OK;
}

void zip_close(zip_archive *z) {
    for (int i = 0; i < z->count; i++) free(z->entries[i].name);
    free(z->entries);
    z->entries = NULL;
    z->count = 0;
}

// ---- writer ------------------------------------------------------------------------------------

typedef struct {
    char *name;
    uint64_t offset;
    uint64_t size;
    uint32_t crc32;
} written_member;

struct zip_writer {
    FILE *f;
    const char *path;
    uint64_t offset;          // bytes written so far: the archive starts at the file's current position
    written_member *members;
    int count, capacity;
    int force_zip64;
};

// Fixed timestamp (1980-01-01 00:00) so that identical inputs give identical archives.
#define DOS_DATE_1980 0x0021
#define ZIP_VERSION_DEFAULT 20
#define ZIP_VERSION_ZIP64 45

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { put_u16(p, (uint16_t)v), put_u16(p + 2, (uint16_t)(v >> 16)); }
static void put_u64(uint8_t *p, uint64_t v) { put_u32(p, (uint32_t)v), put_u32(p + 4, (uint32_t)(v >> 32)); }

zip_writer *zip_writer_open(FILE *f, const char *path) {
    zip_writer *w = dit_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->f = f;
    w->path = path;
    return w;
}

void zip_writer_force_zip64(zip_writer *w) { w->force_zip64 = 1; }

static dit_status write_bytes(zip_writer *w, const void *data, size_t size) {
    if (size && fwrite(data, 1, size, w->f) != size) return dit_set_error("%s: write failed", w->path);
    w->offset += size;
    return DIT_OK;
}

dit_status zip_writer_add(zip_writer *w, const char *name, const void *data, size_t size) {
    size_t name_len = strlen(name);
    if (name_len > 0xFFFF) return dit_set_error("%s: zip member name too long", w->path);
    if (w->count == INT_MAX) return dit_set_error("%s: too many zip members", w->path);
    int zip64 = w->force_zip64 || (uint64_t)size >= 0xFFFFFFFF;
    uint32_t crc = crc32_of(data, size);

    uint8_t header[LOCAL_HEADER_SIZE + 20];
    memset(header, 0, sizeof header);
    put_u32(header, SIG_LOCAL);
    put_u16(header + 4, zip64 ? ZIP_VERSION_ZIP64 : ZIP_VERSION_DEFAULT);
    put_u16(header + 12, DOS_DATE_1980);
    put_u32(header + 14, crc);
    put_u32(header + 18, zip64 ? 0xFFFFFFFF : (uint32_t)size);
    put_u32(header + 22, zip64 ? 0xFFFFFFFF : (uint32_t)size);
    put_u16(header + 26, (uint16_t)name_len);
    put_u16(header + 28, zip64 ? 20 : 0);
    // The local zip64 extra holds both sizes (APPNOTE §4.5.3: local headers must include both).
    put_u16(header + 30, EXTRA_ZIP64);
    put_u16(header + 32, 16);
    put_u64(header + 34, size);
    put_u64(header + 42, size);

    if (w->count == w->capacity) {
        written_member *grown = dit_realloc(w->members, (size_t)(w->capacity ? w->capacity * 2 : 16) * sizeof *grown);
        if (!grown) return DIT_ERR;
        w->members = grown;
        w->capacity = w->capacity ? w->capacity * 2 : 16;
    }
    written_member *m = &w->members[w->count];
    m->offset = w->offset;
    m->size = size;
    m->crc32 = crc;
    if (write_bytes(w, header, LOCAL_HEADER_SIZE) != DIT_OK || write_bytes(w, name, name_len) != DIT_OK ||
        (zip64 && write_bytes(w, header + LOCAL_HEADER_SIZE, 20) != DIT_OK) || write_bytes(w, data, size) != DIT_OK)
        return DIT_ERR;
    if (!(m->name = dit_strdup(name))) return DIT_ERR;
    w->count++;
    return DIT_OK;
}

static dit_status write_central_header(zip_writer *w, const written_member *m) {
    int big_size = w->force_zip64 || m->size >= 0xFFFFFFFF;
    int big_offset = w->force_zip64 || m->offset >= 0xFFFFFFFF;
    size_t name_len = strlen(m->name);
    uint8_t h[CENTRAL_HEADER_SIZE], extra[4 + 24];
    memset(h, 0, sizeof h);
    uint16_t extra_len = 0;
    if (big_size || big_offset) {
        size_t pos = 4;
        if (big_size) put_u64(extra + pos, m->size), pos += 8, put_u64(extra + pos, m->size), pos += 8;
        if (big_offset) put_u64(extra + pos, m->offset), pos += 8;
        put_u16(extra, EXTRA_ZIP64);
        put_u16(extra + 2, (uint16_t)(pos - 4));
        extra_len = (uint16_t)pos;
    }
    uint16_t version = extra_len ? ZIP_VERSION_ZIP64 : ZIP_VERSION_DEFAULT;
    put_u32(h, SIG_CENTRAL);
    put_u16(h + 4, version);   // made by: MS-DOS attributes, this spec version
    put_u16(h + 6, version);
    put_u16(h + 14, DOS_DATE_1980);
    put_u32(h + 16, m->crc32);
    put_u32(h + 20, big_size ? 0xFFFFFFFF : (uint32_t)m->size);
    put_u32(h + 24, big_size ? 0xFFFFFFFF : (uint32_t)m->size);
    put_u16(h + 28, (uint16_t)name_len);
    put_u16(h + 30, extra_len);
    put_u32(h + 42, big_offset ? 0xFFFFFFFF : (uint32_t)m->offset);
    if (write_bytes(w, h, sizeof h) != DIT_OK || write_bytes(w, m->name, name_len) != DIT_OK ||
        write_bytes(w, extra, extra_len) != DIT_OK)
        return DIT_ERR;
    return DIT_OK;
}

static dit_status write_end_records(zip_writer *w, uint64_t cd_offset, uint64_t cd_size) {
    uint64_t count = (uint64_t)w->count;
    int zip64 = w->force_zip64 || count >= 0xFFFF || cd_offset >= 0xFFFFFFFF || cd_size >= 0xFFFFFFFF;
    if (zip64) {
        uint64_t record_offset = w->offset;
        uint8_t r[ZIP64_EOCD_SIZE + ZIP64_LOCATOR_SIZE];
        memset(r, 0, sizeof r);
        put_u32(r, SIG_ZIP64_EOCD);
        put_u64(r + 4, ZIP64_EOCD_SIZE - 12);   // size of the rest of the record
        put_u16(r + 12, ZIP_VERSION_ZIP64);
        put_u16(r + 14, ZIP_VERSION_ZIP64);
        put_u64(r + 24, count);
        put_u64(r + 32, count);
        put_u64(r + 40, cd_size);
        put_u64(r + 48, cd_offset);
        uint8_t *loc = r + ZIP64_EOCD_SIZE;
        put_u32(loc, SIG_ZIP64_LOCATOR);
        put_u64(loc + 8, record_offset);
        put_u32(loc + 16, 1);   // total number of disks
        if (write_bytes(w, r, sizeof r) != DIT_OK) return DIT_ERR;
    }
    uint8_t e[EOCD_SIZE];
    memset(e, 0, sizeof e);
    put_u32(e, SIG_EOCD);
    put_u16(e + 8, zip64 ? 0xFFFF : (uint16_t)count);
    put_u16(e + 10, zip64 ? 0xFFFF : (uint16_t)count);
    put_u32(e + 12, zip64 ? 0xFFFFFFFF : (uint32_t)cd_size);
    put_u32(e + 16, zip64 ? 0xFFFFFFFF : (uint32_t)cd_offset);
    return write_bytes(w, e, sizeof e);
}

dit_status zip_writer_finish(zip_writer *w) {
    uint64_t cd_offset = w->offset;
    dit_status status = DIT_OK;
    for (int i = 0; i < w->count && status == DIT_OK; i++) status = write_central_header(w, &w->members[i]);
    if (status == DIT_OK) status = write_end_records(w, cd_offset, w->offset - cd_offset);
    for (int i = 0; i < w->count; i++) free(w->members[i].name);
    free(w->members);
    free(w);
    return status;
}

int zip_file_has_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}
