build-tmp/src/diffusion/schedule.o: src/diffusion/schedule.c \
 src/base/error.h include/dit.h src/diffusion/diffusion.h
src/base/error.h:
include/dit.h:
src/diffusion/diffusion.h:
