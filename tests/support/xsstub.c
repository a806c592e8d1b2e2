/*
 * LD_PRELOAD stub that lets the C xenstored of Xen 4.17 run without a hypervisor.
 *
 * The daemon needs the hypercall, event-channel and grant-table libraries and two xenfs
 * files (/proc/xen/xsd_port, /proc/xen/xsd_kva) only to set up dom0's ring and to look
 * domains up. Here every domain "exists", event channels are numbers that never fire, the
 * ring page is anonymous memory, and the two xenfs files are memfds. Socket clients then
 * get the real daemon's behaviour. Built by tests/support/real_xenstored.py.
 *
 * The OCaml oxenstored also raises its open-files limit at start and stops when the sandbox
 * refuses: with XSSTUB_IGNORE_SETRLIMIT=1 in the environment, setrlimit() succeeds and does
 * nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

/* Any non-NULL pointer will do: the daemon only hands it back to us. */
static char dummy_handle[64];
static int never_ready_pipe[2] = {-1, -1};
static int next_port = 10;

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return (xc_interface *)dummy_handle;
}

int xc_interface_close(xc_interface *xch) { (void)xch; return 0; }

/* XSSTUB_DOMAINS="0,1,5": the only domains the hypervisor has; unset, every domain exists. */
static int domain_exists(uint32_t domid)
{
    const char *list = getenv("XSSTUB_DOMAINS");
    char *end;

    if (list == NULL)
        return 1;
    while (*list) {
        unsigned long id = strtoul(list, &end, 10);
        if (end == list)
            return 0;
        if (id == domid)
            return 1;
        list = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                      xc_dominfo_t *info)
{
    (void)xch;
    if (max_doms == 0 || !domain_exists(first_domid))
        return 0;
    memset(info, 0, sizeof(*info));
    info->domid = first_domid;
    info->running = 1;
    return 1;
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
    (void)logger; (void)flags;
    if (never_ready_pipe[0] < 0 && pipe(never_ready_pipe) != 0)
        return NULL;
    return (xenevtchn_handle *)dummy_handle;
}

xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd, unsigned open_flags)
{
    (void)fd;
    return xenevtchn_open(logger, open_flags);
}

int xenevtchn_close(xenevtchn_handle *xce) { (void)xce; return 0; }
int xenevtchn_fd(xenevtchn_handle *xce) { (void)xce; return never_ready_pipe[0]; }
int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port) { (void)xce; (void)port; return 0; }
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce) { (void)xce; return -1; }

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
{
    (void)xce; (void)virq;
    return next_port++;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                                                     evtchn_port_t remote_port)
{
    (void)xce; (void)domid; (void)remote_port;
    return next_port++;
}

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags)
{
    (void)logger; (void)open_flags;
    return (xengnttab_handle *)dummy_handle;
}

int xengnttab_close(xengnttab_handle *xgt) { (void)xgt; return 0; }

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    (void)xgt; (void)nr_grants;
    return 0;
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid, uint32_t ref, int prot)
{
    void *page;
    (void)xgt; (void)domid; (void)ref; (void)prot;
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return page == MAP_FAILED ? NULL : page;
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)count * 4096);
}

/* A memfd holding `content` (or `size` zero bytes), positioned at its start. */
static int fake_file(const char *name, const char *content, size_t size)
{
    int fd = memfd_create(name, 0);
    if (fd < 0)
        return -1;
    if (content != NULL) {
        size_t len = strlen(content);
        if (write(fd, content, len) != (ssize_t)len) {
            close(fd);
            return -1;
        }
        lseek(fd, 0, SEEK_SET);
    } else if (ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int (*real_open)(const char *, int, ...);

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (strcmp(path, "/proc/xen/xsd_port") == 0)
        return fake_file("xsd_port", "1", 0);
    if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        return fake_file("xsd_kva", NULL, 4096);
    if (real_open == NULL)
        real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    return real_open(path, flags, mode);
}

static int (*real_setrlimit)(__rlimit_resource_t, const struct rlimit *);
static int (*real_setrlimit64)(__rlimit_resource_t, const struct rlimit64 *);

static int ignore_setrlimit(void)
{
    const char *v = getenv("XSSTUB_IGNORE_SETRLIMIT");
    return v != NULL && strcmp(v, "1") == 0;
}

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
    if (ignore_setrlimit())
        return 0;
    if (real_setrlimit == NULL)
        real_setrlimit = (int (*)(__rlimit_resource_t, const struct rlimit *))
            dlsym(RTLD_NEXT, "setrlimit");
    return real_setrlimit(resource, rlim);
}

int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rlim)
{
    if (ignore_setrlimit())
        return 0;
    if (real_setrlimit64 == NULL)
        real_setrlimit64 = (int (*)(__rlimit_resource_t, const struct rlimit64 *))
            dlsym(RTLD_NEXT, "setrlimit64");
    return real_setrlimit64(resource, rlim);
}
