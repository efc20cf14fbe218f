// SPDX-License-Identifier: GPL-2.0-only
//
// jail's eBPF tracing backend, kernel side (docs/tracing.md, "The ebpf
// backend"). Built by bpf/build.sh into bpf/trace.bpf.o, which is committed
// and embedded in the jail binary; scripts/test.sh checks that the committed
// object matches this source.
//
// What it does:
//  * keeps the set of traced thread groups (`traced`) in the kernel: the
//    first process jail forks after arming `config` is added, and every
//    process forked by a traced one (sched_process_fork); a group is removed
//    when its last thread exits (sched_process_exit);
//  * at sys_exit of a path syscall (the descriptors in `descs`, filled by
//    jail from src/trace/syscalls.rs) of a traced thread group, sends the
//    syscall number, arguments and result, the path names as the program
//    wrote them (read at exit: the kernel has just copied them, so their
//    pages are resident) and, for a relative or dirfd-relative name, the
//    dentry chain of the directory it was resolved against (the cwd or the
//    dirfd's file), walked up to the task's root across mounts — or, when
//    this CPU sent the same chain lately, its slot in the per-CPU chain
//    cache (`cached_walk`; any process's rename or mount-tree change bumps
//    the cache's generation);
//  * at sched_process_exec, the name the program was executed by, the cwd
//    chain when that name is relative, and the chain of the file loaded;
//    then its argv (read from the new mm's arg_start..arg_end) and its
//    credentials (task->cred: uids, gids, supplementary groups);
//  * the process tree, so that the command is never stopped: a fork event
//    for every process or thread a traced group starts, an exit event with
//    the wait status when a group's last thread exits, and the credentials
//    again at sys_exit of every setuid-family call;
//  * counts every event it could not deliver whole (`lost`): jail fails the
//    trace when any count is not zero.
//
// Kernel structures are declared here with only the fields read, marked
// preserve_access_index: the loader relocates each field against the
// running kernel's BTF (CO-RE), so no vmlinux.h is needed.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef __u8 u8;
typedef __s8 s8;
typedef __u16 u16;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;

struct pt_regs {
	unsigned long r10, r9, r8, si, dx, di, orig_ax;
} __attribute__((preserve_access_index));

struct qstr {
	u64 hash_len;
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root, pwd;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	unsigned int f_mode;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live;
	unsigned int flags;
	int group_exit_code;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start, arg_end;
} __attribute__((preserve_access_index));

typedef struct {
	unsigned int val;
} kuid_t;

typedef struct {
	unsigned int val;
} kgid_t;

struct group_info {
	int ngroups;
	kgid_t gid[];
} __attribute__((preserve_access_index));

struct cred {
	kuid_t uid, suid, euid, fsuid;
	kgid_t gid, sgid, egid, fsgid;
	struct group_info *group_info;
} __attribute__((preserve_access_index));

// x86: the first member of task_struct (THREAD_INFO_IN_TASK).
struct thread_info {
	u32 status;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	int pid;
	int tgid;
	int exit_code;
	struct fs_struct *fs;
	struct files_struct *files;
	struct signal_struct *signal;
	struct mm_struct *mm;
	const struct cred *cred;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	const char *filename;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "GPL";

// Keep in step with src/trace/ebpf.rs.
#define MAX_NR 512
#define PATH_MAX 4096
#define NAME_MAX 255
#define MAX_DEPTH 64
#define DATA_USED 16384
#define RING_SIZE (8 << 20)
#define DATA_SIZE (DATA_USED + PATH_MAX)
#define AT_FDCWD -100
#define TS_COMPAT 0x0002
#define X32_SYSCALL_BIT 0x40000000
#define EFAULT 14

#define KIND_SYSCALL 1
#define KIND_EXEC 2
#define KIND_FORK 3	// tgid: parent; tid: child; args[0]: child's tgid
#define KIND_EXIT 4	// a group's last thread exited; ret: the wait status
#define KIND_ARGV 5	// the argv of the exec just sent (name 1: NUL-separated)
#define KIND_ABI 7	// a 32-bit (nr: i386) or x32 (flags: F_X32) syscall
#define KIND_CREDS 6	// args[0..3]: uid|euid<<32, suid|fsuid<<32, gid|egid<<32,
			// sgid|fsgid<<32; name 1: the supplementary groups (u32s)

#define MAX_GROUPS 64
#define SIGNAL_GROUP_EXIT 0x4

// event.flags
#define F_NO_BASE1 (1 << 0)	// base 1 unavailable (closed fd, not a file)
#define F_NO_BASE2 (1 << 1)
#define F_OUTSIDE1 (1 << 2)	// base 1 is outside the task's root
#define F_OUTSIDE2 (1 << 3)
#define F_NULL1 (1 << 4)	// name 1 pointer was NULL
#define F_NULL2 (1 << 5)
#define F_BASE1 (1 << 6)	// chain 1 present
#define F_BASE2 (1 << 7)
#define F_CREATED (1 << 8)	// the open created the file (FMODE_CREATED)
#define F_THREAD (1 << 9)	// KIND_FORK: a thread of the parent's group
#define F_X32 (1 << 11)	// KIND_ABI: an x32 call, not an i386 one
#define F_TRUNCATED (1 << 10)	// KIND_ARGV/KIND_CREDS: did not fit, cut
#define F_SAME1 (1 << 12)	// chain 1 is cached chain event.slot[0] of
#define F_SAME2 (1 << 13)	// this CPU (no bytes sent)
#define F_CACHED1 (1 << 14)	// chain 1 is now cached chain event.slot[0]
#define F_CACHED2 (1 << 15)
#define CACHED 4		// chains cached per CPU

#define FMODE_CREATED (1 << 20)
#define O_CREAT 0100
#define O_TMPFILE_BIT 020000000

// lost[] indexes
#define LOST_RINGBUF 0
#define LOST_READ 1
#define LOST_CHAIN 2
#define LOST_MAP 3
#define LOST_N 4

// descriptor kinds
#define D_PATHS 1	// names in path1/path2, bases dirfd1/dirfd2 (or the cwd)
#define D_FD 2		// the path of the fd in `fd`
#define D_SOCKADDR 3	// a sockaddr_un in args[1], length args[2]
#define D_MARK 4	// no names (io_uring_setup)
#define D_EXEC 5	// like D_PATHS, only failures (success: sched_process_exec)
#define D_CREDS 6	// no names: the credentials after a setuid-family call
#define D_GEN 7		// no event: a mount-tree change (mount, umount2, ...)

// desc.fd_result bit 2: a success may change the names of directories
// (rename, or a D_GEN call): the chain cache's generation moves on.
#define R_GEN 4

struct desc {
	u8 kind;
	s8 path1, dirfd1, path2, dirfd2;
	s8 fd;		// D_FD; with D_PATHS: a NULL path1 means this fd
	s8 empty_flags;	// flags argument whose AT_EMPTY_PATH marks an fstat
	u8 fd_result;	// bit 0: the result is an fd of the file opened;
			// bit 1: args[2] points to a struct open_how (openat2),
			// whose flags the event carries in args[5];
			// bit 2: R_GEN; bits 3-5: 1 + the open flags' argument
};

struct event {
	u32 kind;
	u32 tgid;
	u32 tid;
	u32 flags;
	s64 nr;
	s64 ret;
	u64 args[6];
	u16 len[4];	// name1, name2, chain1, chain2 (bytes, NULs included)
	u32 cpu;	// the CPU it was sent from (whose chain cache F_SAME names)
	u8 slot[2];	// chain 1's and 2's slot in that cache (F_SAME, F_CACHED)
	u16 spare;
	char data[DATA_SIZE];
};

// Who starts the command. The next process the thread `launcher` (a thread
// id, not a group's: other threads of jail's process — a library user's,
// or a second trace's — fork too) forks is the command, or with `hops` = 1
// that child becomes the launcher (the sandbox's init, whose own setup is
// no part of the command).
struct config {
	u64 launcher;
	u64 armed;
	u64 hops;
};

// traced[] values: the command's first process before its exec (its events
// are jail's own preparation: chdir, credentials) and every process after.
#define T_STARTING 1
#define T_LIVE 2

// What a chain was walked from, as the chain cache compares it: the
// directory (its dentry, parent and salted name hash: a freed dentry
// reused for another directory differs in one of them), its mount, the
// task's root, and the generation of `gen` (renames and mount-tree changes
// anywhere: an ancestor's new name changes the chain, not the dentry).
struct chain_key {
	struct dentry *d;
	struct dentry *parent;
	u64 hash_len;
	struct vfsmount *vm;
	struct dentry *root_d;
	struct vfsmount *root_m;
	u64 gen;
};

// Per-CPU work area: the event being built and what the walks need.
struct work {
	struct dentry *root_d;	// the task's root
	struct vfsmount *root_m;
	u32 outside;		// set by walk()
	u32 none;		// set by walk_fd()
	// walk() state, one component a bpf_loop step
	struct dentry *cur_d;
	struct vfsmount *cur_vm;
	struct mount *cur_m;
	struct dentry *cur_mnt_root;	// cur_vm's mnt_root
	u32 off;
	s32 err;		// 0 going on, 1 done, -1 failed
	// The chain cache: the chains syscall events of this CPU sent whole
	// (F_CACHED, the least recently used one replaced), which a later
	// event with the same key names by F_SAME and a slot instead of
	// walking it again (jail keeps the same slots per CPU).
	struct chain_key key;	// the key cached_walk() looks up
	struct chain_key cache[CACHED];
	u64 used[CACHED];	// clock at the last use; 0: empty
	u64 clock;
	u32 sent;		// events sent from this CPU (send())
	u32 same;		// set by cached_walk(): the cache was used
	u32 pending;		// bit k-1: pend[k-1] holds chain k's key
	struct chain_key pend[2];
	struct event e;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_NR);
	__type(key, u32);
	__type(value, struct desc);
} descs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u32);
} traced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOST_N);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct work);
} scratch SEC(".maps");

// The chain cache's generation: bumped at every successful rename or
// mount-tree change, by any process.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_SIZE);
} events SEC(".maps");

static __always_inline void count_lost(u32 why)
{
	u64 *n = bpf_map_lookup_elem(&lost, &why);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline int is_live(u32 tgid)
{
	u32 *v = bpf_map_lookup_elem(&traced, &tgid);
	return v && *v == T_LIVE;
}

static __always_inline struct work *scratch_work(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

// One step of walk(): emit one component, or cross one mount, or stop.
static long walk_step(u64 i, void *unused)
{
	struct work *w = scratch_work();
	if (!w)
		return 1;
	struct dentry *d = w->cur_d;
	struct vfsmount *vm = w->cur_vm;
	if (d == w->root_d && vm == w->root_m) {
		w->err = 1;
		return 1;
	}
	if (d == w->cur_mnt_root) {
		struct mount *m = w->cur_m;
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);
		if (parent == m) {
			w->outside = 1;
			w->err = 1;
			return 1;
		}
		w->cur_d = BPF_CORE_READ(m, mnt_mountpoint);
		w->cur_m = parent;
		struct vfsmount *pvm = (struct vfsmount *)((void *)parent +
					bpf_core_field_offset(struct mount, mnt));
		w->cur_vm = pvm;
		w->cur_mnt_root = BPF_CORE_READ(pvm, mnt_root);
		return 0;
	}
	struct dentry *up = BPF_CORE_READ(d, d_parent);
	if (up == d) {
		w->outside = 1;
		w->err = 1;
		return 1;
	}
	u32 off = w->off;
	if (off > DATA_USED - NAME_MAX - 1) {
		w->err = -1;
		return 1;
	}
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	int n = bpf_probe_read_kernel_str(&w->e.data[off & (DATA_USED - 1)],
					  NAME_MAX + 1, name);
	if (n <= 0) {
		w->err = -1;
		return 1;
	}
	w->off = off + n;
	w->cur_d = up;
	return 0;
}

// Write the components of the path (d, vm) at data[off], leaf first, each
// NUL-terminated, up to the task's root (w->root_*). Returns the new offset,
// or -1 when a name could not be read or the chain is too deep or long;
// sets w->outside when the walk reached the top of the mount tree (or a
// detached dentry) without meeting the task's root.
static __always_inline int walk(struct work *w, u32 off, struct dentry *d,
				struct vfsmount *vm)
{
	w->cur_d = d;
	w->cur_vm = vm;
	w->cur_m = (struct mount *)((void *)vm - bpf_core_field_offset(struct mount, mnt));
	w->cur_mnt_root = BPF_CORE_READ(vm, mnt_root);
	w->off = off;
	w->err = 0;
	bpf_loop(MAX_DEPTH, walk_step, 0, 0);
	if (w->err != 1)
		return -1;
	return w->off;
}

static __always_inline u64 *gen_slot(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&gen, &zero);
}

static __always_inline u64 generation(void)
{
	u64 *g = gen_slot();
	return g ? *g : 0;
}

// The cache slot holding w->key, or -1. A global function: the verifier
// checks it once, not at each of cached_walk()'s inlined call sites.
__noinline int cache_find(struct work *w)
{
	if (!w)
		return -1;
	struct chain_key *k = &w->key;
	for (int i = 0; i < CACHED; i++) {
		struct chain_key *c = &w->cache[i];
		if (w->used[i] && c->d == k->d && c->parent == k->parent &&
		    c->hash_len == k->hash_len && c->vm == k->vm &&
		    c->root_d == k->root_d && c->root_m == k->root_m && c->gen == k->gen)
			return i;
	}
	return -1;
}

// The cache slot to replace: an empty one, else the least recently used
// one other than `keep` (a slot this event names). Global, as cache_find.
__noinline int cache_victim(struct work *w, int keep)
{
	if (!w)
		return 0;
	int v = keep == 0 ? 1 : 0;
	for (int i = 0; i < CACHED; i++) {
		if (i != keep && w->used[i] < w->used[v & (CACHED - 1)])
			v = i;
	}
	return v;
}

// walk() for chain `slot` (1 or 2; 0: no cache) of a syscall event: when
// the chain cache holds the same key, sets w->same and writes nothing;
// otherwise walks, and keeps the key for send() to cache.
// A global function, as cache_find: verified once, not at each call site.
// (The kernel pointers come as integers: a global function's pointer
// arguments must point to memory the program owns.)
__noinline int cached_walk(struct work *w, u32 off, u64 dp, u64 vmp, int slot)
{
	struct dentry *d = (struct dentry *)dp;
	struct vfsmount *vm = (struct vfsmount *)vmp;
	if (!w)
		return -1;
	w->same = 0;
	if (slot < 1 || slot > 2)
		return walk(w, off, d, vm);
	struct chain_key *k = &w->key;
	k->d = d;
	k->parent = BPF_CORE_READ(d, d_parent);
	k->hash_len = BPF_CORE_READ(d, d_name.hash_len);
	k->vm = vm;
	k->root_d = w->root_d;
	k->root_m = w->root_m;
	k->gen = generation();
	int i = cache_find(w);
	if (i >= 0) {
		w->same = 1;
		w->e.slot[(slot - 1) & 1] = i;
		w->used[i & (CACHED - 1)] = ++w->clock;
		return off;
	}
	int r = walk(w, off, d, vm);
	if (r >= 0 && !w->outside) {
		w->pend[(slot - 1) & 1] = w->key;
		w->pending |= slot;
	}
	return r;
}

// The file of `t`'s descriptor `fd`, or NULL.
static __always_inline struct file *fd_file(struct task_struct *t, s64 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

// The chain of `fd`'s file (flags F_NO_BASE when there is none).
static __always_inline int walk_fd(struct work *w, u32 off, struct task_struct *t,
				   s64 fd, int slot)
{
	struct file *f = fd_file(t, fd);
	if (!f) {
		w->none = 1;
		return off;
	}
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *vm = BPF_CORE_READ(f, f_path.mnt);
	return cached_walk(w, off, (u64)d, (u64)vm, slot);
}

static __always_inline u64 arg(struct event *e, int i)
{
	if (i < 0 || i > 5)
		return 0;
	return e->args[i];
}


// Returns 1 when the event is in the ring.
static __always_inline int send(struct event *e, u32 off)
{
	if (off >= DATA_USED) {
		count_lost(LOST_CHAIN);
		return 0;
	}
	u64 len = off;
	// Keep the bound visible to the verifier (the compiler drops a mask
	// it can prove redundant).
	asm volatile("%0 &= %1" : "+r"(len) : "i"(DATA_USED - 1));
	// Wake the reader only when the ring is a quarter full; otherwise it
	// polls every few milliseconds. A wake-up per event would cost the
	// command a cross-CPU wake-up per path syscall, as ptrace's stops do.
	// The query reads the reader's position, a cache line the other CPU
	// writes: ask every 32nd event of a CPU (at most 32 events of up to
	// 20 KiB, 640 KiB, go in between: far below the quarter's 2 MiB).
	u64 flags = BPF_RB_NO_WAKEUP;
	u32 zero = 0;
	struct work *w = bpf_map_lookup_elem(&scratch, &zero);
	if (w && (++w->sent & 31) == 0 &&
	    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > RING_SIZE / 4)
		flags = BPF_RB_FORCE_WAKEUP;
	e->cpu = bpf_get_smp_processor_id();
	if (bpf_ringbuf_output(&events, e, offsetof(struct event, data) + len, flags)) {
		count_lost(LOST_RINGBUF);
		return 0;
	}
	return 1;
}

// Read a user string at data[off]; returns its length with the NUL, 0 for
// a NULL pointer, -1 on a failed read.
static __always_inline int read_name(struct event *e, u32 off, u64 ptr)
{
	if (!ptr)
		return 0;
	if (off > DATA_USED - PATH_MAX)
		return -1;
	int n = bpf_probe_read_user_str(&e->data[off & (DATA_USED - 1)], PATH_MAX,
					(const void *)ptr);
	return n <= 0 ? -1 : n;
}

// The base chain for a name at data[name_off] (`n` bytes, 0 when NULL),
// with dirfd argument index `dirfd_arg` (-1: the cwd).
static __always_inline int base_for(struct work *w, u32 off, u32 name_off, int n,
				    int dirfd_arg, struct task_struct *t, int slot)
{
	struct event *e = &w->e;
	if (n > 1 && e->data[name_off & (DATA_USED - 1)] == '/')
		return off; // absolute: no base
	s64 dirfd = AT_FDCWD;
	if (dirfd_arg >= 0)
		dirfd = (s32)arg(e, dirfd_arg);
	if (dirfd == AT_FDCWD) {
		struct dentry *d = BPF_CORE_READ(t, fs, pwd.dentry);
		struct vfsmount *vm = BPF_CORE_READ(t, fs, pwd.mnt);
		return cached_walk(w, off, (u64)d, (u64)vm, slot);
	}
	return walk_fd(w, off, t, dirfd, slot);
}

// send() for a syscall event whose chains went through cached_walk(): the
// chains walked whole go into this CPU's cache once the event is in the
// ring (F_CACHED and the slot tell jail where). jail reads the slots an
// event names with F_SAME before it stores the event's own chains.
static __always_inline void send_cached(struct work *w, struct event *e, u32 off)
{
	int v1 = -1, v2 = -1;
	if (w->pending & 1) {
		// Chain 2 may name a slot too: keep it.
		v1 = cache_victim(w, (e->flags & F_SAME2) ? e->slot[1] & (CACHED - 1) : -1);
		e->slot[0] = v1;
		e->flags |= F_CACHED1;
	}
	if (w->pending & 2) {
		int keep = (e->flags & F_SAME1) ? e->slot[0] & (CACHED - 1) : v1;
		v2 = cache_victim(w, keep);
		e->slot[1] = v2;
		e->flags |= F_CACHED2;
	}
	if (!send(e, off))
		return;
	if (v1 >= 0) {
		w->cache[v1 & (CACHED - 1)] = w->pend[0];
		w->used[v1 & (CACHED - 1)] = ++w->clock;
	}
	if (v2 >= 0) {
		w->cache[v2 & (CACHED - 1)] = w->pend[1];
		w->used[v2 & (CACHED - 1)] = ++w->clock;
	}
}

// Start an event with no arguments, names or chains.
static __always_inline struct event *begin(struct work *w, u32 kind, u32 tgid, u32 tid)
{
	struct event *e = &w->e;
	e->kind = kind;
	e->tgid = tgid;
	e->tid = tid;
	e->flags = 0;
	e->nr = 0;
	e->ret = 0;
	for (int i = 0; i < 6; i++)
		e->args[i] = 0;
	e->len[0] = e->len[1] = e->len[2] = e->len[3] = 0;
	return e;
}

// The credentials `t` runs with now (after an exec or a setuid-family
// call): the four uids, the four gids and the supplementary groups.
static __always_inline void send_creds(struct task_struct *t, u32 tgid, u32 tid)
{
	struct work *w = scratch_work();
	if (!w)
		return;
	struct event *e = begin(w, KIND_CREDS, tgid, tid);
	const struct cred *c = BPF_CORE_READ(t, cred);
	if (!c) {
		count_lost(LOST_READ);
		return;
	}
	u64 uid = BPF_CORE_READ(c, uid.val), euid = BPF_CORE_READ(c, euid.val);
	u64 suid = BPF_CORE_READ(c, suid.val), fsuid = BPF_CORE_READ(c, fsuid.val);
	u64 gid = BPF_CORE_READ(c, gid.val), egid = BPF_CORE_READ(c, egid.val);
	u64 sgid = BPF_CORE_READ(c, sgid.val), fsgid = BPF_CORE_READ(c, fsgid.val);
	e->args[0] = uid | euid << 32;
	e->args[1] = suid | fsuid << 32;
	e->args[2] = gid | egid << 32;
	e->args[3] = sgid | fsgid << 32;
	struct group_info *gi = BPF_CORE_READ(c, group_info);
	s32 n = gi ? BPF_CORE_READ(gi, ngroups) : 0;
	if (n < 0)
		n = 0;
	if (n > MAX_GROUPS) {
		n = MAX_GROUPS;
		e->flags |= F_TRUNCATED;
	}
	u64 size = (u64)n * 4;
	asm volatile("%0 &= %1" : "+r"(size) : "i"(MAX_GROUPS * 4 * 2 - 1));
	if (size > 0 &&
	    bpf_probe_read_kernel(&e->data[0], size,
				  (void *)gi + bpf_core_field_offset(struct group_info, gid))) {
		count_lost(LOST_READ);
		return;
	}
	e->len[0] = size;
	send(e, size);
}

SEC("raw_tracepoint/sys_exit")
int jail_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	s64 ret = ctx->args[1];
	struct task_struct *cur = bpf_get_current_task_btf();
	struct pt_regs *bregs = (struct pt_regs *)bpf_task_pt_regs(cur);
	u32 nr = bregs->orig_ax;
	// A 32-bit (int 0x80: TS_COMPAT, set until the return to user mode)
	// or x32 call of the command: its number and registers mean something
	// else; jail refuses the run, as the ptrace backend does.
	// (orig_ax is -1 after rt_sigreturn: not a call, not x32.)
	u32 x32 = (s32)nr >= 0 && (nr & X32_SYSCALL_BIT);
	if (x32 || (cur->thread_info.status & TS_COMPAT)) {
		u64 id = bpf_get_current_pid_tgid();
		if (!is_live(id >> 32))
			return 0;
		// Killed as the call returns: the program runs no further on a
		// misread call (ptrace stops it before the call; here it has run).
		bpf_send_signal(9 /* SIGKILL */);
		struct work *w = scratch_work();
		if (!w)
			return 0;
		struct event *e = begin(w, KIND_ABI, id >> 32, (u32)id);
		e->nr = nr & ~X32_SYSCALL_BIT;
		if (x32)
			e->flags = F_X32;
		send(e, 0);
		return 0;
	}
	if (nr >= MAX_NR)
		return 0;
	struct desc *d = bpf_map_lookup_elem(&descs, &nr);
	if (!d || !d->kind)
		return 0;
	if ((d->fd_result & R_GEN) && ret == 0) {
		// Any process's rename or mount-tree change: cached chains may
		// name directories by their old names now.
		u64 *g = gen_slot();
		if (g)
			__sync_fetch_and_add(g, 1);
	}
	if (d->kind == D_GEN)
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	if (!is_live(tgid))
		return 0;
	if (d->kind == D_EXEC && ret == 0)
		return 0;
	if (d->kind == D_CREDS) {
		send_creds((struct task_struct *)bpf_get_current_task(), tgid, (u32)id);
		return 0;
	}
	struct work *w = scratch_work();
	if (!w)
		return 0;
	struct event *e = &w->e;
	e->kind = KIND_SYSCALL;
	e->tgid = tgid;
	e->tid = (u32)id;
	e->flags = 0;
	e->nr = nr;
	e->ret = ret;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	e->args[0] = BPF_CORE_READ(regs, di);
	e->args[1] = BPF_CORE_READ(regs, si);
	e->args[2] = BPF_CORE_READ(regs, dx);
	e->args[3] = BPF_CORE_READ(regs, r10);
	e->args[4] = BPF_CORE_READ(regs, r8);
	e->args[5] = BPF_CORE_READ(regs, r9);
	e->len[0] = e->len[1] = e->len[2] = e->len[3] = 0;

	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	w->root_d = BPF_CORE_READ(t, fs, root.dentry);
	w->root_m = BPF_CORE_READ(t, fs, root.mnt);
	w->outside = 0;
	w->none = 0;
	w->pending = 0;
	u32 off = 0;

	if (d->kind == D_MARK) {
		send(e, 0);
		return 0;
	}
	if (d->kind == D_SOCKADDR) {
		u64 len = e->args[2];
		if (!e->args[1] || len <= 2)
			return 0;
		if (len > 110)
			len = 110;
		u16 family = 0;
		bpf_probe_read_user(&family, sizeof(family), (void *)e->args[1]);
		if (family != 1 /* AF_UNIX */)
			return 0;
		char first = 0;
		bpf_probe_read_user(&first, 1, (void *)(e->args[1] + 2));
		if (first == 0)
			return 0; // abstract
		int n = bpf_probe_read_user_str(&e->data[0], len - 2 + 1,
						(void *)(e->args[1] + 2));
		if (n <= 0) {
			if (ret != -EFAULT)
				count_lost(LOST_READ);
			return 0;
		}
		e->len[0] = n;
		off = n;
		w->same = 0;
		int r = base_for(w, off, 0, n, -1, t, 1);
		if (r < 0) {
			count_lost(LOST_CHAIN);
			return 0;
		}
		if (e->data[0] != '/')
			e->flags |= F_BASE1;
		if (w->same)
			e->flags |= F_SAME1;
		if (w->outside)
			e->flags |= F_OUTSIDE1;
		e->len[2] = r - off;
		send_cached(w, e, r);
		return 0;
	}
	if (d->kind == D_FD) {
		s32 fd = (s32)arg(e, d->fd);
		w->same = 0;
		int r = walk_fd(w, 0, t, fd, 1);
		if (r < 0) {
			count_lost(LOST_CHAIN);
			return 0;
		}
		e->flags |= F_BASE1;
		if (w->same)
			e->flags |= F_SAME1;
		if (w->none)
			e->flags |= F_NO_BASE1;
		if (w->outside)
			e->flags |= F_OUTSIDE1;
		e->len[2] = r;
		send_cached(w, e, r);
		return 0;
	}

	// D_PATHS / D_EXEC.
	if (d->fd_result & 2) {
		// openat2: the flags are in user memory, read like the names.
		u64 how_flags = 0;
		if (bpf_probe_read_user(&how_flags, sizeof(how_flags), (void *)e->args[2])) {
			if (ret != -EFAULT)
				count_lost(LOST_READ);
			return 0;
		}
		e->args[5] = how_flags;
	}
	// Only an open with O_CREAT (or O_TMPFILE) can have created the file;
	// bits 3-5 say which argument has the flags (0: unknown, look).
	u32 fi = (d->fd_result >> 3) & 7;
	u64 open_flags = (d->fd_result & 2) ? e->args[5] : fi ? arg(e, fi - 1) : O_CREAT;
	if ((d->fd_result & 1) && ret >= 0 && (open_flags & (O_CREAT | O_TMPFILE_BIT))) {
		struct file *f = fd_file(t, ret);
		if (f && (BPF_CORE_READ(f, f_mode) & FMODE_CREATED))
			e->flags |= F_CREATED;
	}
	int p1 = d->path1, p2 = d->path2, fd1 = d->dirfd1, fd2 = d->dirfd2;
	int n1 = 0, n2 = 0;
	if (p1 >= 0) {
		n1 = read_name(e, 0, arg(e, p1));
		if (n1 < 0) {
			if (ret != -EFAULT)
				count_lost(LOST_READ);
			return 0;
		}
		if (n1 == 0)
			e->flags |= F_NULL1;
		// glibc's fstat: newfstatat/statx(fd, "", AT_EMPTY_PATH) names an
		// fd already recorded; ptrace's filter lets them pass too.
		if (d->empty_flags >= 0 && n1 == 1 &&
		    (arg(e, d->empty_flags) & 0x1000 /* AT_EMPTY_PATH */))
			return 0;
	}
	off = n1;
	if (p2 >= 0) {
		n2 = read_name(e, off, arg(e, p2));
		if (n2 < 0) {
			if (ret != -EFAULT)
				count_lost(LOST_READ);
			return 0;
		}
		if (n2 == 0)
			e->flags |= F_NULL2;
	}
	e->len[0] = n1;
	e->len[1] = n2;
	off += n2;
	if (p1 >= 0) {
		u32 start = off;
		int r = off;
		w->same = 0;
		if (n1 == 0 && d->fd >= 0) {
			// utimensat(fd, NULL, ...): the fd itself.
			r = walk_fd(w, off, t, (s32)arg(e, d->fd), 1);
			e->flags |= F_BASE1;
		} else if (n1 > 0) {
			r = base_for(w, off, 0, n1, fd1, t, 1);
			if (n1 == 1 || e->data[0] != '/')
				e->flags |= F_BASE1;
		}
		if (r < 0) {
			count_lost(LOST_CHAIN);
			return 0;
		}
		if (w->same)
			e->flags |= F_SAME1;
		if (w->none)
			e->flags |= F_NO_BASE1;
		if (w->outside)
			e->flags |= F_OUTSIDE1;
		e->len[2] = r - start;
		off = r;
	}
	if (p2 >= 0 && n2 > 0) {
		u32 start = off;
		w->outside = 0;
		w->none = 0;
		w->same = 0;
		int r = base_for(w, off, n1, n2, fd2, t, 2);
		if (r < 0) {
			count_lost(LOST_CHAIN);
			return 0;
		}
		if (n2 == 1 || e->data[n1 & (DATA_USED - 1)] != '/')
			e->flags |= F_BASE2;
		if (w->same)
			e->flags |= F_SAME2;
		if (w->none)
			e->flags |= F_NO_BASE2;
		if (w->outside)
			e->flags |= F_OUTSIDE2;
		e->len[3] = r - start;
		off = r;
	}
	send_cached(w, e, off);
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int jail_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	u32 tgid = BPF_CORE_READ(t, tgid);
	u32 *state = bpf_map_lookup_elem(&traced, &tgid);
	if (!state)
		return 0;
	*state = T_LIVE;
	struct work *w = scratch_work();
	if (!w)
		return 0;
	struct event *e = &w->e;
	e->kind = KIND_EXEC;
	e->tgid = tgid;
	e->tid = BPF_CORE_READ(t, pid);
	e->flags = 0;
	e->nr = 59;
	e->ret = 0;
	for (int i = 0; i < 6; i++)
		e->args[i] = 0;
	e->len[0] = e->len[1] = e->len[2] = e->len[3] = 0;
	const char *filename = BPF_CORE_READ(bprm, filename);
	int n = bpf_probe_read_kernel_str(&e->data[0], PATH_MAX, filename);
	if (n <= 0) {
		count_lost(LOST_READ);
		return 0;
	}
	e->len[0] = n;
	w->root_d = BPF_CORE_READ(t, fs, root.dentry);
	w->root_m = BPF_CORE_READ(t, fs, root.mnt);
	w->outside = 0;
	w->none = 0;
	u32 off = n;
	int r = base_for(w, off, 0, n, -1, t, 0);
	if (r < 0) {
		count_lost(LOST_CHAIN);
		return 0;
	}
	if (e->data[0] != '/')
		e->flags |= F_BASE1;
	if (w->outside)
		e->flags |= F_OUTSIDE1;
	e->len[2] = r - off;
	off = r;
	// The file loaded (execveat by fd names it only as /dev/fd/N).
	w->outside = 0;
	struct dentry *fd_ = BPF_CORE_READ(bprm, file, f_path.dentry);
	struct vfsmount *fm = BPF_CORE_READ(bprm, file, f_path.mnt);
	r = walk(w, off, fd_, fm);
	if (r < 0) {
		count_lost(LOST_CHAIN);
		return 0;
	}
	e->flags |= F_BASE2;
	if (w->outside)
		e->flags |= F_OUTSIDE2;
	e->len[3] = r - off;
	send(e, r);

	// Its argv, from the new image's stack (current's mm is the new one
	// here; the kernel has just written the strings, so they are resident).
	u32 tid = e->tid;
	e = begin(w, KIND_ARGV, tgid, tid);
	u64 start = BPF_CORE_READ(t, mm, arg_start);
	u64 end = BPF_CORE_READ(t, mm, arg_end);
	u64 size = end > start ? end - start : 0;
	if (size > DATA_USED - 1) {
		size = DATA_USED - 1;
		e->flags |= F_TRUNCATED;
	}
	asm volatile("%0 &= %1" : "+r"(size) : "i"(DATA_USED - 1));
	if (size > 0 && bpf_probe_read_user(&e->data[0], size, (void *)start)) {
		count_lost(LOST_READ);
		return 0;
	}
	e->len[0] = size;
	send(e, size);
	send_creds(t, tgid, tid);
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int jail_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	u32 ptgid = BPF_CORE_READ(parent, tgid);
	u32 ctgid = BPF_CORE_READ(child, tgid);
	u32 ctid = BPF_CORE_READ(child, pid);
	u32 *pv = bpf_map_lookup_elem(&traced, &ptgid);
	if (ptgid == ctgid) {
		// A thread: its group is already known; counted for the tree.
		if (!pv)
			return 0;
		struct work *w = scratch_work();
		if (!w)
			return 0;
		struct event *e = begin(w, KIND_FORK, ptgid, ctid);
		e->args[0] = ctgid;
		e->flags = F_THREAD;
		send(e, 0);
		return 0;
	}
	u32 val = T_STARTING;
	if (pv) {
		val = *pv;
	} else {
		u32 zero = 0;
		struct config *c = bpf_map_lookup_elem(&config, &zero);
		if (!c || c->launcher != BPF_CORE_READ(parent, pid) || c->armed != 1)
			return 0;
		if (c->hops > 0) {
			c->launcher = ctgid;
			c->hops -= 1;
			return 0;
		}
		if (__sync_val_compare_and_swap(&c->armed, 1, 0) != 1)
			return 0;
	}
	if (bpf_map_update_elem(&traced, &ctgid, &val, BPF_ANY)) {
		count_lost(LOST_MAP);
		return 0;
	}
	struct work *w = scratch_work();
	if (!w)
		return 0;
	struct event *e = begin(w, KIND_FORK, ptgid, ctid);
	e->args[0] = ctgid;
	send(e, 0);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int jail_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	u32 tgid = BPF_CORE_READ(t, tgid);
	if (!bpf_map_lookup_elem(&traced, &tgid))
		return 0;
	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	// The group's wait status, as wait(2) will report it: the group exit
	// code after exit_group or a fatal signal, else this thread's code.
	struct signal_struct *sig = BPF_CORE_READ(t, signal);
	s64 status = BPF_CORE_READ(t, exit_code);
	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		status = BPF_CORE_READ(sig, group_exit_code);
	// Sent before the group leaves the map: once the map is empty, jail
	// knows every event of the command is in the ring.
	struct work *w = scratch_work();
	if (w) {
		struct event *e = begin(w, KIND_EXIT, tgid, BPF_CORE_READ(t, pid));
		e->ret = status;
		send(e, 0);
	}
	bpf_map_delete_elem(&traced, &tgid);
	return 0;
}
