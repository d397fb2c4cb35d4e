// Whole-file read-only mappings and atomic writes: data goes to "<path>.tmp.<pid>", is flushed and
// fsync'd, then renamed over the final name (and the directory fsync'd so the rename itself is durable).
#include "base/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

dit_status map_file(const char *path, mapped_file *m) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dit_set_error("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return dit_set_error("%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dit_set_error("%s: not a regular file", path);
    }
    if (st.st_size == 0) {   // mmap of length 0 fails; an empty file is a valid (empty) mapping
        close(fd);
        return DIT_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);   // the mapping keeps the file alive
    if (p == MAP_FAILED) return dit_set_error("%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(err));
    m->data = p;
    m->size = (size_t)st.st_size;
    return DIT_OK;
}

void unmap_file(mapped_file *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

dit_status atomic_file_open(atomic_file *a, const char *path) {
    a->f = NULL;
    a->final_path = NULL;
    a->temp_path = NULL;
    size_t n = strlen(path) + 32;
    char *temp = dit_malloc(n);
    if (!temp) return DIT_ERR;
    snprintf(temp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(temp, "wb");
    if (!f) {
        dit_set_error("%s: cannot create %s: %s", path, temp, strerror(errno));
        free(temp);
        return DIT_ERR;
    }
    a->final_path = dit_strdup(path);
    if (!a->final_path) {
        fclose(f);
        unlink(temp);
        free(temp);
        return DIT_ERR;
    }
    a->f = f;
    a->temp_path = temp;
    return DIT_OK;
}

static void atomic_file_release(atomic_file *a) {
    free(a->final_path);
    free(a->temp_path);
    a->f = NULL;
    a->final_path = NULL;
    a->temp_path = NULL;
}

// fsync the directory holding path, so the rename survives a crash. Failure here is not fatal: some
// file systems refuse fsync on directories, and the data itself is already on disk.
static void fsync_parent_directory(const char *path) {
    char *dir = dit_strdup(path);
    if (!dir) return;   // out of memory: skip it, as any other failure here
    char *slash = strrchr(dir, '/');
    const char *name = ".";
    if (slash) {
        if (slash == dir) slash[1] = '\0';   // "/file" -> "/"
        else *slash = '\0';
        name = dir;
    }
    int fd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

dit_status atomic_file_commit(atomic_file *a) {
    DIT_CHECK(a->f != NULL);
    int failed_errno = 0;
    const char *step = NULL;
    if (ferror(a->f)) failed_errno = EIO, step = "write";
    if (!step && fflush(a->f) != 0) failed_errno = errno, step = "write";
    if (!step && fsync(fileno(a->f)) != 0) failed_errno = errno, step = "fsync";
    if (fclose(a->f) != 0 && !step) failed_errno = errno, step = "close";
    a->f = NULL;
    if (!step && rename(a->temp_path, a->final_path) != 0) failed_errno = errno, step = "rename";
    if (step) {
        dit_set_error("%s: %s failed: %s", a->final_path, step, strerror(failed_errno));
        remove(a->temp_path);
        atomic_file_release(a);
        return DIT_ERR;
    }
    fsync_parent_directory(a->final_path);
    atomic_file_release(a);
    return DIT_OK;
}

void atomic_file_abort(atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->temp_path) remove(a->temp_path);
    atomic_file_release(a);
}
