// PyTorch .pt reading over a memory buffer (torch_pt_read maps the file and calls this); exposed so tests
// can feed modified bytes without writing files.
#ifndef DIT_IO_TORCH_PT_H
#define DIT_IO_TORCH_PT_H

#include <stddef.h>
#include <stdint.h>

#include "io/tensors.h"

// The .pt in data[0..size): views point into data, which the caller keeps alive while *out lives
// (out->map stays NULL). `path` names the input in messages. On failure *out is left empty.
dit_status torch_pt_parse(const uint8_t *data, size_t size, const char *path, tensor_file *out);

#endif
