#!/usr/bin/env python3
"""Where a node's CPU time goes, from a perf profile with call stacks.

    perf record -F 499 --call-graph dwarf,16384 -p <node pid> -o node.data     (or measure.py --perf-record)
    perf script -i node.data -F comm,tid,ip,sym,dso > node.txt
    docs/profiling/categorize.py node.txt

Self time: each sample counts once, for the category of its innermost frame; a sample in the kernel counts
for the system call it is in (or scheduling/interrupts when it is in none). Inclusive: the share of samples
whose stack contains a marker (async frames are often cut off by the unwinder, so these are lower bounds).
"""
import collections, re, sys

THREADS = [("sqlx-sqlite", "SQLite connection threads (sqlx workers)"),
           ("actix-rt|system", "HTTP workers (actix-web)"),
           ("ordersaga", "main thread (engine actors, bus, relay)"),
           ("tokio-runtime", "tokio worker threads")]

USER = [
    (r"^(sqlite3|pcache|wal|btree|vdbe|yy_|unix|pager|Btree|getAndInitPage|balance|insertCell|releaseMem|moveTo|whereLoop|exprAnalyze|fillInCell|computeCellSize|patternCompare|accessPayload|zero|blob|get2byte|rowSetInsert)", "SQLite engine"),
    (r"^(malloc|_int_malloc|_int_free|cfree|free|realloc|malloc_consolidate|unlink_chunk|__rustc::__rdl|__rust_alloc|__rust_dealloc|calloc|tcache|_int_realloc|__GI___libc_(malloc|free|realloc)|alloc::raw_vec)", "allocator (malloc/free)"),
    (r"^(__memmove|__memcmp|__memset|__memcpy|__strlen|memcpy|__memchr|__strchr|__strcmp)", "libc memcpy/memcmp"),
    (r"^(pthread_|__GI___pthread|__lll_|syscall$|__futex)", "libc locks/futex"),
    (r"serde_json|serde::|<serde", "JSON (serde_json)"),
    (r"sqlx", "sqlx driver"),
    (r"flume", "sqlx channel (flume)"),
    (r"sea_orm|sea_query", "sea-orm / sea-query (query building, row mapping)"),
    (r"actix_http|actix_web|h1::|http::header|httparse|actix_router|tracing_actix_web", "HTTP (actix-http/actix-web)"),
    (r"jsonwebtoken|hmac|sha2|base64|ring::", "JWT / hashing"),
    (r"tokio|mio::|actix_rt|actix::|futures|LocalSet|std::sys::sync|std::thread|Mutex>::lock", "async runtime, actors, locks"),
    (r"metrics|prometheus", "metrics"),
    (r"tracing|regex|EnvFilter", "tracing / log filtering"),
    (r"chrono|uuid|rust_decimal|time::", "chrono / uuid / decimal"),
    (r"actors::|ordersaga::|entities::", "ordersaga code"),
]

SYSCALLS = [
    (r"__x64_sys_(fsync|fdatasync)|ext4_sync_file|file_write_and_wait", "kernel: fsync"),
    (r"__x64_sys_futex", "kernel: futex (thread wake/wait)"),
    (r"__x64_sys_(pwrite64|write|writev)|ext4_.*write|generic_perform_write", "kernel: file/socket write"),
    (r"__x64_sys_(pread64|read|readv)", "kernel: file/socket read"),
    (r"__x64_sys_(sendto|sendmsg|recvfrom|recvmsg)|tcp_|inet_", "kernel: TCP send/recv"),
    (r"__x64_sys_(epoll_wait|epoll_ctl|epoll_pwait)", "kernel: epoll"),
    (r"__x64_sys_(fcntl|flock)", "kernel: file locks (fcntl)"),
    (r"__x64_sys_(mmap|munmap|madvise|brk|mprotect)|page_fault|exc_page_fault", "kernel: memory (mmap/page faults)"),
    (r"__x64_sys_", "kernel: other syscalls"),
    (r"schedule|finish_task_switch|exit_to_user_mode", "kernel: scheduling (preemption, context switches)"),
    (r"irq|softirq|timer|apic", "kernel: interrupts"),
]

INCLUSIVE = [
    ("sqlite3_step", r"^sqlite3_step$"),
    ("sqlite3 prepare (parse SQL)", r"sqlite3_prepare|sqlite3RunParser|sqlite3LockAndPrepare"),
    ("fsync", r"__x64_sys_(fsync|fdatasync)"),
    ("futex (wake/wait)", r"__x64_sys_futex"),
    ("actix-http", r"actix_http"),
    ("serde_json", r"serde_json"),
    ("jsonwebtoken", r"jsonwebtoken"),
    ("sea-orm/sea-query", r"sea_orm|sea_query"),
    ("sqlx", r"sqlx"),
    ("orders::place", r"actors::orders::place"),
    ("mailbox::handle", r"actors::mailbox::Mailbox::handle"),
    ("outbox relay", r"actors::outbox"),
    ("inventory", r"actors::inventory"),
    ("saga apply_input", r"actors::saga::apply_input"),
    ("GET /api/orders/{id} handler", r"ordersaga::routes::orders::get"),
    ("GET /api/sagas", r"ordersaga::routes::sagas"),
    ("metrics", r"metrics"),
]


def main():
    path = sys.argv[1]
    samples = []
    comm = None
    frames = []
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                samples.append((comm, frames))
            comm, frames = None, []
            continue
        if not line.startswith("\t") and not line.startswith(" "):
            comm = line.split()[0]
            frames = []
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            sym = parts[1].rsplit(" (", 1)[0]
            dso = parts[1].rsplit(" (", 1)[1].rstrip(")") if " (" in parts[1] else ""
            frames.append((sym, dso))
    if comm is not None:
        samples.append((comm, frames))
    n = len(samples)
    by_thread = collections.Counter()
    self_cat = collections.Counter()
    self_cat_thread = collections.defaultdict(collections.Counter)
    incl = collections.Counter()
    unknown = collections.Counter()
    for comm, frames in samples:
        thread = next((label for prefix, label in THREADS if comm.startswith(prefix)), comm)
        by_thread[thread] += 1
        cat = None
        if frames and "kernel" in frames[0][1]:
            kernel = [s for s, d in frames if "kernel" in d]
            text = " ".join(kernel)
            for pattern, label in SYSCALLS:
                if re.search(pattern, text):
                    cat = label
                    break
            cat = cat or "kernel: other"
        elif frames:
            leaf = frames[0][0]
            for pattern, label in USER:
                if re.search(pattern, leaf):
                    cat = label
                    break
            if cat is None:
                unknown[leaf] += 1
                cat = "other user code"
        else:
            cat = "no stack"
        self_cat[cat] += 1
        self_cat_thread[thread][cat] += 1
        stack = " | ".join(s for s, _ in frames)
        for label, pattern in INCLUSIVE:
            if any(re.search(pattern, s) for s, _ in frames):
                incl[label] += 1
    print(f"samples: {n}")
    print("\n== by thread ==")
    for k, v in by_thread.most_common():
        print(f"{100 * v / n:6.1f}%  {k}")
    print("\n== self time by category ==")
    for k, v in self_cat.most_common():
        print(f"{100 * v / n:6.1f}%  {k}")
    print("\n== self time by thread and category ==")
    for t, c in self_cat_thread.items():
        tot = sum(c.values())
        print(f"-- {t} ({100 * tot / n:.1f}%)")
        for k, v in c.most_common(8):
            print(f"   {100 * v / n:6.1f}%  {k}")
    print("\n== inclusive (stack contains) ==")
    for k, _ in INCLUSIVE:
        print(f"{100 * incl[k] / n:6.1f}%  {k}")
    print("\n== unclassified user leaves ==")
    for k, v in unknown.most_common(15):
        print(f"{100 * v / n:6.2f}%  {k}")


main()
