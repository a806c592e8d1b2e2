/*
 * Xen 4.17's hypercall ABI answered by a simulated node, for LD_PRELOAD into Xen's own tools.
 *
 * Debian's libxenctrl, libxencall, libxenforeignmemory and libxendevicemodel reach Xen through
 * the plain libc calls open/ioctl/mmap/close on /dev/xen/privcmd.  This library defines those
 * symbols: opening /dev/xen/privcmd (or /proc/xen/privcmd) gives a descriptor this library
 * knows, /dev/xen/hypercall is absent (so libxencall takes its buffers from anonymous memory,
 * which is ordinary memory of the process), and every IOCTL_PRIVCMD_HYPERCALL on a known
 * descriptor is decoded here from Xen 4.17's own structures (the installed headers) and
 * answered from the simulated node's hypervisor endpoint: the unix socket named by
 * AIOVIRT_SIM_PRIVCMD when privcmd is opened, speaking aiovirt/protocol/privcmd.py.  The node's model
 * is the only source of the domains' state; what the node does not model (the scheduler's
 * name, the compile information, cpupools) is answered here as a plain one-pool credit Xen.
 *
 * Calls the node does not model are answered -ENOSYS, as a Xen without the feature does; a
 * sysctl or domctl of another interface version is answered -EACCES, as Xen does.  The version
 * the simulated hypervisor speaks is XEN_{SYSCTL,DOMCTL}_INTERFACE_VERSION (both 0x15 in 4.17)
 * unless AIOVIRT_SIM_XEN_INTERFACE names another (hexadecimal) when privcmd is opened, to play
 * a hypervisor of another release.
 *
 * Paths under /var/run/xen, /run/xen, /var/lib/xen, /var/log/xen and /sys/bus/xen-backend are
 * redirected under AIOVIRT_SIM_XEN_ROOT when it is set, through every call that names a path
 * (open, fopen, opendir, access, stat, lstat, unlink, rename, mkdir, rmdir), so that libxl's
 * lock files and xentop's backend directory are private to the node.
 *
 * Without AIOVIRT_SIM_PRIVCMD the library changes nothing.
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/memory.h>
#include <xen/sysctl.h>
#include <xen/version.h>
#include <xen/sys/privcmd.h>

_Static_assert(XEN_SYSCTL_INTERFACE_VERSION == XEN_DOMCTL_INTERFACE_VERSION,
               "one interface version for both, as in Xen 4.17");

/* Marks the library as loaded, for a process that wants to know (ctypes.CDLL(None)). */
int aiovirt_xenabi_loaded(void)
{
    return 1;
}

/* ---- the node's hypervisor endpoint (aiovirt/protocol/privcmd.py) ------------------------ */

enum {
    OP_GETDOMAININFOLIST = 1,
    OP_PAUSEDOMAIN = 2,
    OP_UNPAUSEDOMAIN = 3,
    OP_DESTROYDOMAIN = 4,
    OP_SETDOMAINMAXMEM = 5,
    OP_XEN_VERSION = 6,
    OP_PHYSINFO = 7,
};

struct sim_request {
    uint32_t op, seq, domid, count;
    uint64_t value;
} __attribute__((packed));

struct sim_reply {
    uint32_t op, seq;
    int32_t result;
    uint32_t length;
} __attribute__((packed));

/* Xen 3.0's dom0_getdomaininfo_t as the endpoint sends it (72 bytes). */
struct sim_dominfo {
    uint16_t domain;
    uint16_t pad;
    uint32_t flags;
    uint64_t tot_pages, max_pages, shared_info_frame, cpu_time;
    uint32_t nr_online_vcpus, max_vcpu_id, ssidref;
    uint8_t handle[16];
    uint32_t pad2;
} __attribute__((packed));

struct sim_physinfo {
    uint32_t nr_cpus, nr_nodes, cores_per_socket, threads_per_core, cpu_khz;
    uint64_t total_pages, free_pages;
} __attribute__((packed));

_Static_assert(sizeof(struct sim_request) == 24, "request size");
_Static_assert(sizeof(struct sim_reply) == 16, "reply size");
_Static_assert(sizeof(struct sim_dominfo) == 72, "record size");
_Static_assert(sizeof(struct sim_physinfo) == 36, "physinfo size");

#define SIM_MAX_BATCH 8192
#define MAX_FDS 65536

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static DIR *(*real_opendir)(const char *);
static int (*real_access)(const char *, int);
static int (*real_stat)(const char *, struct stat *);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_stat64)(const char *, struct stat64 *);
static int (*real_lstat64)(const char *, struct stat64 *);
static int (*real_unlink)(const char *);
static int (*real_rename)(const char *, const char *);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_rmdir)(const char *);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off64_t);

static const char *xen_root;      /* AIOVIRT_SIM_XEN_ROOT */

/* What each privcmd descriptor was opened on: the node's endpoint (AIOVIRT_SIM_PRIVCMD, read
 * at open, so one process can reach successive nodes) and the interface version it speaks. */
struct privcmd_fd {
    const char *endpoint; /* NULL: not a privcmd descriptor */
    uint32_t interface_version;
};
static struct privcmd_fd privcmd_fds[MAX_FDS];
static pthread_mutex_t endpoints_lock = PTHREAD_MUTEX_INITIALIZER;
static const char **endpoints; /* every node path seen, interned (never freed: fds name them) */
static size_t n_endpoints, cap_endpoints;
static pthread_key_t sock_key; /* closes a thread's connection when the thread ends */

/* The call in progress in this thread, and this thread's connection to a node. */
static __thread const struct privcmd_fd *current;
static __thread int sim_sock = -1;
static __thread pid_t sim_sock_pid;
static __thread const char *sim_sock_endpoint;
static __thread uint32_t sim_seq;

#define RESOLVE(name) (real_##name = dlsym(RTLD_NEXT, #name))

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void close_thread_socket(void *value)
{
    int fd = (int)(intptr_t)value - 1;
    if (fd >= 0 && sim_sock == fd && sim_sock_pid == getpid())
        real_close(fd);
    sim_sock = -1;
}

static void xenabi_init(void)
{
    RESOLVE(open); RESOLVE(open64); RESOLVE(openat); RESOLVE(openat64);
    RESOLVE(__open_2); RESOLVE(__open64_2); RESOLVE(__openat_2); RESOLVE(__openat64_2);
    RESOLVE(fopen); RESOLVE(fopen64); RESOLVE(opendir); RESOLVE(access);
    RESOLVE(stat); RESOLVE(lstat); RESOLVE(stat64); RESOLVE(lstat64);
    RESOLVE(unlink); RESOLVE(rename); RESOLVE(mkdir); RESOLVE(rmdir);
    RESOLVE(ioctl); RESOLVE(close); RESOLVE(mmap); RESOLVE(mmap64);
    xen_root = getenv("AIOVIRT_SIM_XEN_ROOT");
    if (xen_root && !*xen_root)
        xen_root = NULL;
    pthread_key_create(&sock_key, close_thread_socket);
}

/* The node named by AIOVIRT_SIM_PRIVCMD now (one interned copy per path), or NULL. */
static const char *current_endpoint(void)
{
    const char *env = getenv("AIOVIRT_SIM_PRIVCMD");
    if (!env || !*env)
        return NULL;
    const char *found = NULL;
    pthread_mutex_lock(&endpoints_lock);
    for (size_t i = 0; i < n_endpoints && !found; i++) {
        if (strcmp(endpoints[i], env) == 0)
            found = endpoints[i];
    }
    if (!found) {
        if (n_endpoints == cap_endpoints) {
            size_t cap = cap_endpoints ? 2 * cap_endpoints : 16;
            const char **grown = realloc(endpoints, cap * sizeof(*grown));
            if (grown) {
                endpoints = grown;
                cap_endpoints = cap;
            }
        }
        char *copy = n_endpoints < cap_endpoints ? strdup(env) : NULL;
        if (copy)
            found = endpoints[n_endpoints++] = copy;
    }
    pthread_mutex_unlock(&endpoints_lock);
    return found;
}

static uint32_t current_interface(void)
{
    const char *iface = getenv("AIOVIRT_SIM_XEN_INTERFACE");
    if (iface && *iface)
        return (uint32_t)strtoul(iface, NULL, 16);
    return XEN_SYSCTL_INTERFACE_VERSION;
}

/* Other libraries' constructors may call in before ours would run: initialise on first use. */
#define INIT() pthread_once(&init_once, xenabi_init)

static int io_full(int fd, void *buf, size_t len, int writing)
{
    char *p = buf;
    while (len) {
        ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void sim_drop(void)
{
    if (sim_sock >= 0 && sim_sock_pid == getpid())
        real_close(sim_sock);
    sim_sock = -1;
    pthread_setspecific(sock_key, NULL);
}

static int sim_connect(void)
{
    const char *endpoint = current->endpoint;
    if (sim_sock >= 0 && sim_sock_pid == getpid() && sim_sock_endpoint == endpoint)
        return 0;
    sim_drop();
    sim_sock = -1; /* a parent's socket, inherited across fork, is not ours to use */
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(endpoint) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    strcpy(addr.sun_path, endpoint);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int err = errno;
        real_close(fd);
        return -err;
    }
    sim_sock = fd;
    sim_sock_pid = getpid();
    sim_sock_endpoint = endpoint;
    pthread_setspecific(sock_key, (void *)(intptr_t)(fd + 1));
    return 0;
}

/*
 * One round trip to the node.  Returns the node's result (>= 0 or -errno) and copies up to
 * out_len bytes of its payload to out (the rest is read and dropped); a broken endpoint is -EIO.
 */
static long sim_call(uint32_t op, uint32_t domid, uint32_t count, uint64_t value,
                     void *out, size_t out_len, size_t *got)
{
    int rc = sim_connect();
    if (rc < 0)
        return -EIO;
    struct sim_request req = { op, ++sim_seq, domid, count, value };
    struct sim_reply rep;
    if (io_full(sim_sock, &req, sizeof(req), 1) < 0 || io_full(sim_sock, &rep, sizeof(rep), 0) < 0
        || rep.seq != req.seq) {
        sim_drop();
        return -EIO;
    }
    size_t keep = rep.length < out_len ? rep.length : out_len;
    if (keep && io_full(sim_sock, out, keep, 0) < 0) {
        sim_drop();
        return -EIO;
    }
    char sink[512];
    for (size_t left = rep.length - keep; left;) {
        size_t n = left < sizeof(sink) ? left : sizeof(sink);
        if (io_full(sim_sock, sink, n, 0) < 0) {
            sim_drop();
            return -EIO;
        }
        left -= n;
    }
    if (got)
        *got = keep;
    return rep.result;
}

/* ---- answers ---------------------------------------------------------------------------- */

static void fill_dominfo(struct xen_domctl_getdomaininfo *out, const struct sim_dominfo *in)
{
    memset(out, 0, sizeof(*out));
    out->domain = in->domain;
    out->flags = in->flags;
    out->tot_pages = in->tot_pages;
    out->max_pages = in->max_pages;
    out->shared_info_frame = in->shared_info_frame;
    out->cpu_time = in->cpu_time;
    out->nr_online_vcpus = in->nr_online_vcpus;
    out->max_vcpu_id = in->max_vcpu_id;
    out->ssidref = in->ssidref;
    memcpy(out->handle, in->handle, sizeof(out->handle));
    out->cpupool = 0;
}

/* Up to max records of the domains with id >= first; returns the count or -errno. */
static long get_records(uint32_t first, uint32_t max, struct xen_domctl_getdomaininfo *out)
{
    uint32_t done = 0;
    uint32_t size = max < SIM_MAX_BATCH ? max : SIM_MAX_BATCH;
    struct sim_dominfo *batch = size ? malloc(size * sizeof(*batch)) : NULL;
    if (size && !batch)
        return -ENOMEM;
    long rc = 0;
    while (done < max) {
        uint32_t want = max - done;
        if (want > size)
            want = size;
        size_t got = 0;
        long n = sim_call(OP_GETDOMAININFOLIST, first, want, 0, batch, want * sizeof(*batch),
                          &got);
        if (n < 0 || (size_t)n * sizeof(*batch) > got) {
            rc = n < 0 ? n : -EIO;
            break;
        }
        for (long i = 0; i < n; i++)
            fill_dominfo(&out[done + i], &batch[i]);
        done += (uint32_t)n;
        if ((uint32_t)n < want)
            break;
        first = (uint32_t)batch[n - 1].domain + 1;
    }
    free(batch);
    return rc < 0 ? rc : (long)done;
}

static long get_physinfo(struct sim_physinfo *phys)
{
    size_t got = 0;
    long rc = sim_call(OP_PHYSINFO, 0, 0, 0, phys, sizeof(*phys), &got);
    if (rc < 0)
        return rc;
    return got == sizeof(*phys) ? 0 : -EIO;
}

static void set_bits(uint8_t *map, uint32_t nr_bits, uint32_t upto)
{
    memset(map, 0, (nr_bits + 7) / 8);
    for (uint32_t i = 0; i < upto && i < nr_bits; i++)
        map[i / 8] |= (uint8_t)(1u << (i % 8));
}

static long do_sysctl(struct xen_sysctl *op)
{
    if (op->interface_version != current->interface_version)
        return -EACCES;
    switch (op->cmd) {
    case XEN_SYSCTL_getdomaininfolist: {
        struct xen_sysctl_getdomaininfolist *l = &op->u.getdomaininfolist;
        long n = get_records(l->first_domain, l->max_domains, l->buffer.p);
        if (n < 0)
            return n;
        l->num_domains = (uint32_t)n;
        return 0;
    }
    case XEN_SYSCTL_physinfo: {
        struct sim_physinfo phys;
        long rc = get_physinfo(&phys);
        if (rc < 0)
            return rc;
        struct xen_sysctl_physinfo *p = &op->u.physinfo;
        memset(p, 0, sizeof(*p));
        p->threads_per_core = phys.threads_per_core;
        p->cores_per_socket = phys.cores_per_socket;
        p->nr_cpus = phys.nr_cpus;
        p->max_cpu_id = phys.nr_cpus ? phys.nr_cpus - 1 : 0;
        p->nr_nodes = phys.nr_nodes;
        p->max_node_id = phys.nr_nodes ? phys.nr_nodes - 1 : 0;
        p->cpu_khz = phys.cpu_khz;
        p->capabilities = XEN_SYSCTL_PHYSCAP_pv;
        p->total_pages = phys.total_pages;
        p->free_pages = phys.free_pages;
        p->max_mfn = phys.total_pages;
        return 0;
    }
    case XEN_SYSCTL_sched_id:
        op->u.sched_id.sched_id = XEN_SCHEDULER_CREDIT;
        return 0;
    case XEN_SYSCTL_cpupool_op: {
        /* One pool, 0, holding every CPU and every domain. */
        struct xen_sysctl_cpupool_op *c = &op->u.cpupool_op;
        struct sim_physinfo phys;
        long rc;
        switch (c->op) {
        case XEN_SYSCTL_CPUPOOL_OP_FREEINFO:
            if (c->cpumap.bitmap.p)
                set_bits(c->cpumap.bitmap.p, c->cpumap.nr_bits, 0);
            return 0;
        case XEN_SYSCTL_CPUPOOL_OP_INFO: {
            if (c->cpupool_id > 0)
                return -ENOENT;
            if ((rc = get_physinfo(&phys)) < 0)
                return rc;
            struct xen_domctl_getdomaininfo page[64];
            uint32_t first = 0, doms = 0;
            long n;
            do {
                n = get_records(first, 64, page);
                if (n < 0)
                    return n;
                doms += (uint32_t)n;
                if (n)
                    first = page[n - 1].domain + 1u;
            } while (n == 64);
            c->cpupool_id = 0;
            c->sched_id = XEN_SCHEDULER_CREDIT;
            c->n_dom = doms;
            if (c->cpumap.bitmap.p)
                set_bits(c->cpumap.bitmap.p, c->cpumap.nr_bits, phys.nr_cpus);
            return 0;
        }
        default:
            return -ENOSYS;
        }
    }
    default:
        return -ENOSYS;
    }
}

static long one_record(uint32_t domid, struct xen_domctl_getdomaininfo *info)
{
    long n = get_records(domid, 1, info);
    if (n < 0)
        return n;
    return n == 1 ? 0 : -ESRCH;
}

/* The record of domain domid itself, which has a vCPU vcpu: 0, -ESRCH or -EINVAL, as Xen. */
static long vcpu_record(uint32_t domid, uint32_t vcpu, struct xen_domctl_getdomaininfo *info)
{
    long rc = one_record(domid, info);
    if (rc < 0)
        return rc;
    if (info->domain != domid)
        return -ESRCH;
    return vcpu > info->max_vcpu_id ? -EINVAL : 0;
}

/* The node's CPU count, fixed when it starts: asked once per thread and node. */
static long node_cpus(void)
{
    static __thread const char *cpus_of;
    static __thread uint32_t cpus;
    if (cpus_of != current->endpoint) {
        struct sim_physinfo phys;
        long rc = get_physinfo(&phys);
        if (rc < 0)
            return rc;
        cpus = phys.nr_cpus;
        cpus_of = current->endpoint;
    }
    return cpus;
}

static long do_domctl(struct xen_domctl *op)
{
    if (op->interface_version != current->interface_version)
        return -EACCES;
    switch (op->cmd) {
    case XEN_DOMCTL_pausedomain:
        return sim_call(OP_PAUSEDOMAIN, op->domain, 0, 0, NULL, 0, NULL);
    case XEN_DOMCTL_unpausedomain:
        return sim_call(OP_UNPAUSEDOMAIN, op->domain, 0, 0, NULL, 0, NULL);
    case XEN_DOMCTL_destroydomain:
        return sim_call(OP_DESTROYDOMAIN, op->domain, 0, 0, NULL, 0, NULL);
    case XEN_DOMCTL_max_mem:
        return sim_call(OP_SETDOMAINMAXMEM, op->domain, 0, op->u.max_mem.max_memkb, NULL, 0, NULL);
    case XEN_DOMCTL_getdomaininfo: {
        /* Answers the first domain with id >= op->domain, and says which it is. */
        struct xen_domctl_getdomaininfo info;
        long rc = one_record(op->domain, &info);
        if (rc < 0)
            return rc;
        op->domain = info.domain;
        op->u.getdomaininfo = info;
        return 0;
    }
    case XEN_DOMCTL_getvcpuinfo: {
        /*
         * The node models a domain's CPU time, not each vCPU's: the first nr_online_vcpus
         * vCPUs are online and share it evenly (the remainder on vCPU 0), on CPUs in turn.
         */
        struct xen_domctl_getvcpuinfo *v = &op->u.getvcpuinfo;
        struct xen_domctl_getdomaininfo info;
        long rc = vcpu_record(op->domain, v->vcpu, &info);
        if (rc < 0)
            return rc;
        long cpus = node_cpus();
        if (cpus < 0)
            return cpus;
        uint32_t online = info.nr_online_vcpus;
        v->online = v->vcpu < online;
        v->running = v->online && (info.flags & XEN_DOMINF_running) != 0;
        v->blocked = v->online && (info.flags & XEN_DOMINF_blocked) != 0;
        v->cpu_time = 0;
        if (v->online) {
            v->cpu_time = info.cpu_time / online;
            if (v->vcpu == 0)
                v->cpu_time += info.cpu_time % online;
        }
        v->cpu = cpus ? (v->vcpu + op->domain) % (uint32_t)cpus : 0;
        return 0;
    }
    case XEN_DOMCTL_getvcpuaffinity: {
        /* No vCPU is pinned: Xen's default affinity, every CPU, hard and soft. */
        struct xen_domctl_vcpuaffinity *a = &op->u.vcpuaffinity;
        struct xen_domctl_getdomaininfo info;
        long rc = vcpu_record(op->domain, a->vcpu, &info);
        if (rc < 0)
            return rc;
        if ((a->flags & XEN_VCPUAFFINITY_HARD) && a->cpumap_hard.bitmap.p)
            set_bits(a->cpumap_hard.bitmap.p, a->cpumap_hard.nr_bits, a->cpumap_hard.nr_bits);
        if ((a->flags & XEN_VCPUAFFINITY_SOFT) && a->cpumap_soft.bitmap.p)
            set_bits(a->cpumap_soft.bitmap.p, a->cpumap_soft.nr_bits, a->cpumap_soft.nr_bits);
        return 0;
    }
    default:
        return -ENOSYS;
    }
}

static void copy_string(void *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memset(dst, 0, size);
    memcpy(dst, src, n);
}

static long do_xen_version(unsigned long cmd, void *arg)
{
    switch (cmd) {
    case XENVER_version:
        return sim_call(OP_XEN_VERSION, 0, 0, 0, NULL, 0, NULL);
    case XENVER_extraversion: {
        char extra[XEN_EXTRAVERSION_LEN + 1] = { 0 };
        size_t got = 0;
        long rc = sim_call(OP_XEN_VERSION, 0, 0, 0, extra, XEN_EXTRAVERSION_LEN - 1, &got);
        if (rc < 0)
            return rc;
        copy_string(arg, sizeof(xen_extraversion_t), extra);
        return 0;
    }
    case XENVER_compile_info: {
        xen_compile_info_t *c = arg;
        copy_string(c->compiler, sizeof(c->compiler), "gcc");
        copy_string(c->compile_by, sizeof(c->compile_by), "aiovirt");
        copy_string(c->compile_domain, sizeof(c->compile_domain), "sim");
        copy_string(c->compile_date, sizeof(c->compile_date), "simulated");
        return 0;
    }
    case XENVER_capabilities:
        copy_string(arg, sizeof(xen_capabilities_info_t), "xen-3.0-x86_64 xen-3.0-x86_32p");
        return 0;
    case XENVER_changeset:
        copy_string(arg, sizeof(xen_changeset_info_t), "unavailable");
        return 0;
    case XENVER_platform_parameters:
        ((xen_platform_parameters_t *)arg)->virt_start = 0xFFFF800000000000ULL;
        return 0;
    case XENVER_get_features: {
        xen_feature_info_t *f = arg;
        f->submap = 0;
        return 0;
    }
    case XENVER_pagesize:
        return 4096;
    case XENVER_guest_handle:
        memset(arg, 0, sizeof(xen_domain_handle_t)); /* Domain-0's handle */
        return 0;
    case XENVER_commandline:
        copy_string(arg, sizeof(xen_commandline_t), "");
        return 0;
    default:
        return -ENOSYS;
    }
}

static long do_hypercall(uint64_t op, const uint64_t *arg);

static long do_memory_op(unsigned long cmd)
{
    switch (cmd) {
    case XENMEM_get_sharing_freed_pages:
    case XENMEM_get_sharing_shared_pages:
        return 0; /* the node shares no pages */
    default:
        return -ENOSYS;
    }
}

static long do_multicall(multicall_entry_t *calls, unsigned long count)
{
    for (unsigned long i = 0; i < count; i++) {
        uint64_t args[5];
        for (int j = 0; j < 5; j++)
            args[j] = calls[i].args[j];
        calls[i].result = (xen_ulong_t)do_hypercall(calls[i].op, args);
    }
    return 0;
}

static long do_hypercall(uint64_t op, const uint64_t *arg)
{
    switch (op) {
    case __HYPERVISOR_sysctl:
        return do_sysctl((struct xen_sysctl *)(uintptr_t)arg[0]);
    case __HYPERVISOR_domctl:
        return do_domctl((struct xen_domctl *)(uintptr_t)arg[0]);
    case __HYPERVISOR_xen_version:
        return do_xen_version(arg[0], (void *)(uintptr_t)arg[1]);
    case __HYPERVISOR_memory_op:
        return do_memory_op(arg[0]);
    case __HYPERVISOR_multicall:
        return do_multicall((multicall_entry_t *)(uintptr_t)arg[0], arg[1]);
    default:
        return -ENOSYS; /* xsm_op among them: what a Xen without FLASK answers */
    }
}

/* ---- the interposed libc calls ---------------------------------------------------------- */

static int is_privcmd_path(const char *path)
{
    return path
        && (strcmp(path, "/dev/xen/privcmd") == 0 || strcmp(path, "/proc/xen/privcmd") == 0);
}

static int is_hypercall_path(const char *path)
{
    return path && strcmp(path, "/dev/xen/hypercall") == 0 && current_endpoint();
}

static int is_privcmd_fd(int fd)
{
    return fd >= 0 && fd < MAX_FDS && privcmd_fds[fd].endpoint;
}

/* Open privcmd for the current node: -2 when no node is named (the real file is opened). */
static int open_privcmd(void)
{
    const char *endpoint = current_endpoint();
    if (!endpoint)
        return -2;
    struct stat st;
    if (real_stat(endpoint, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        errno = ENOENT; /* no node: as on a machine without Xen */
        return -1;
    }
    int fd = real_open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fd >= MAX_FDS) {
        real_close(fd);
        errno = EMFILE;
        return -1;
    }
    privcmd_fds[fd].interface_version = current_interface();
    privcmd_fds[fd].endpoint = endpoint;
    return fd;
}

static const char *const redirected[] = {
    "/var/run/xen", "/run/xen", "/var/lib/xen", "/var/log/xen", "/sys/bus/xen-backend", NULL,
};

/* Return path, or its place under AIOVIRT_SIM_XEN_ROOT (in buf) when it is redirected. */
static const char *redirect(const char *path, char *buf, size_t size)
{
    if (!xen_root || !path || path[0] != '/')
        return path;
    for (const char *const *p = redirected; *p; p++) {
        size_t n = strlen(*p);
        if (strncmp(path, *p, n) == 0 && (path[n] == '\0' || path[n] == '/')) {
            if ((size_t)snprintf(buf, size, "%s%s", xen_root, path) >= size)
                return path;
            return buf;
        }
    }
    return path;
}

#define REDIRECT(var) char var##_buf[4096]; var = redirect(var, var##_buf, sizeof(var##_buf))

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

static int open_common(int (*real)(const char *, int, ...), const char *path, int flags,
                       mode_t mode)
{
    if (is_privcmd_path(path)) {
        int fd = open_privcmd();
        if (fd != -2)
            return fd;
    }
    if (is_hypercall_path(path)) {
        errno = ENOENT;
        return -1;
    }
    REDIRECT(path);
    return real(path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    INIT();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(real_open, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    INIT();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(real_open64 ? real_open64 : real_open, path, flags, mode);
}

int __open_2(const char *path, int flags)
{
    INIT();
    return open_common(real_open, path, flags, 0);
}

int __open64_2(const char *path, int flags)
{
    INIT();
    return open_common(real_open64 ? real_open64 : real_open, path, flags, 0);
}

static int openat_common(int (*real)(int, const char *, int, ...), int dirfd, const char *path,
                         int flags, mode_t mode)
{
    if (path && path[0] == '/') {
        if (is_privcmd_path(path)) {
            int fd = open_privcmd();
            if (fd != -2)
                return fd;
        }
        if (is_hypercall_path(path)) {
            errno = ENOENT;
            return -1;
        }
        REDIRECT(path);
        return real(dirfd, path, flags, mode);
    }
    return real(dirfd, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    INIT();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return openat_common(real_openat, dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    INIT();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return openat_common(real_openat64 ? real_openat64 : real_openat, dirfd, path, flags, mode);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    INIT();
    return openat_common(real_openat, dirfd, path, flags, 0);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
    INIT();
    return openat_common(real_openat64 ? real_openat64 : real_openat, dirfd, path, flags, 0);
}

FILE *fopen(const char *path, const char *mode)
{
    INIT();
    REDIRECT(path);
    return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    INIT();
    REDIRECT(path);
    return (real_fopen64 ? real_fopen64 : real_fopen)(path, mode);
}

DIR *opendir(const char *path)
{
    INIT();
    REDIRECT(path);
    return real_opendir(path);
}

int access(const char *path, int amode)
{
    INIT();
    const char *endpoint;
    if (is_privcmd_path(path) && (endpoint = current_endpoint())) {
        struct stat st;
        if (real_stat(endpoint, &st) == 0 && S_ISSOCK(st.st_mode))
            return 0;
        errno = ENOENT;
        return -1;
    }
    REDIRECT(path);
    return real_access(path, amode);
}

int stat(const char *path, struct stat *st)
{
    INIT();
    REDIRECT(path);
    return real_stat(path, st);
}

int lstat(const char *path, struct stat *st)
{
    INIT();
    REDIRECT(path);
    return real_lstat(path, st);
}

int stat64(const char *path, struct stat64 *st)
{
    INIT();
    REDIRECT(path);
    return real_stat64(path, st);
}

int lstat64(const char *path, struct stat64 *st)
{
    INIT();
    REDIRECT(path);
    return real_lstat64(path, st);
}

int unlink(const char *path)
{
    INIT();
    REDIRECT(path);
    return real_unlink(path);
}

int rename(const char *from, const char *to)
{
    INIT();
    REDIRECT(from);
    REDIRECT(to);
    return real_rename(from, to);
}

int mkdir(const char *path, mode_t mode)
{
    INIT();
    REDIRECT(path);
    return real_mkdir(path, mode);
}

int rmdir(const char *path)
{
    INIT();
    REDIRECT(path);
    return real_rmdir(path);
}

int close(int fd)
{
    INIT();
    if (is_privcmd_fd(fd))
        privcmd_fds[fd].endpoint = NULL;
    if (fd >= 0 && fd == sim_sock && sim_sock_pid == getpid()) {
        /* The program closes our connection (as some do to every descriptor before exec):
         * forget it, so its number, reused, is never taken for the node's socket. */
        sim_sock = -1;
        pthread_setspecific(sock_key, NULL);
    }
    return real_close(fd);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    INIT();
    if (is_privcmd_fd(fd)) {
        errno = ENODEV; /* the node maps no foreign memory */
        return MAP_FAILED;
    }
    return real_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
    INIT();
    if (is_privcmd_fd(fd)) {
        errno = ENODEV;
        return MAP_FAILED;
    }
    return (real_mmap64 ? real_mmap64 : real_mmap)(addr, len, prot, flags, fd, off);
}

int ioctl(int fd, unsigned long request, ...)
{
    INIT();
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!is_privcmd_fd(fd))
        return real_ioctl(fd, request, arg);
    long rc;
    switch (request) {
    case IOCTL_PRIVCMD_HYPERCALL: {
        privcmd_hypercall_t *h = arg;
        current = &privcmd_fds[fd];
        uint64_t args[5];
        for (int i = 0; i < 5; i++)
            args[i] = h->arg[i];
        rc = do_hypercall(h->op, args);
        break;
    }
    case IOCTL_PRIVCMD_DM_OP:
        /* libxendevicemodel's probe: no buffers for a reserved domain.  Device models are
         * not simulated, so any real request is not implemented. */
        rc = ((privcmd_dm_op_t *)arg)->num == 0 ? 0 : -ENOSYS;
        break;
    case IOCTL_PRIVCMD_RESTRICT:
        rc = 0;
        break;
    default:
        rc = -ENOTTY; /* as Linux answers an ioctl privcmd does not know */
        break;
    }
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return (int)rc;
}
