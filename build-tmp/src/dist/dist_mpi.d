build-tmp/src/dist/dist_mpi.o: src/dist/dist_mpi.c \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h \
 /usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h \
 src/base/error.h include/dit.h src/dist/dist.h
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h:
/usr/lib/x86_64-linux-gnu/openmpi/include/mpi_portable_platform.h:
src/base/error.h:
include/dit.h:
src/dist/dist.h:
