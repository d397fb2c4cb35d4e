// Fuzz target: the restricted unpickler (pickle.c), every opcode of protocols 0-5.
#include "fuzz.h"
#include "io/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pickle_doc doc;
    if (pickle_parse(data, size, "fuzz.pkl", &doc) != DIT_OK) return 0;
    if (!doc.root) abort();
    pickle_doc_free(&doc);
    return 0;
}
