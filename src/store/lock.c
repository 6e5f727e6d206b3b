/* lock.c - the data-directory lock: an exclusive flock on the directory
 * itself, so two processes (or two stores in one process) can never write
 * the same files.  The kernel drops it when the fd closes, even on kill -9. */
#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/internal.h"

int dir_lock(const char *dir, int *dirfd, struct serr *e)
{
    int fd = dir_open_or_create(dir, e);
    if (fd < 0)
        return fd;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        close(fd);
        if (err == EWOULDBLOCK)
            return serr_set(e, -EBUSY,
                            "data directory %s is in use by another process (flock)", dir);
        return serr_set(e, -err, "flock %s: %s", dir, strerror(err));
    }
    *dirfd = fd;
    return 0;
}
