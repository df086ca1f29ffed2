"""Kernel UAPI constants and struct layouts (x86-64 / aarch64), nothing else.

Byte offsets are those of ``union bpf_attr`` and ``struct perf_event_attr``
in include/uapi/linux/{bpf,perf_event}.h.
"""

import os

# ---------------------------------------------------------------- syscalls
_MACHINE = os.uname().machine
if _MACHINE in ("aarch64", "arm64"):
    NR_BPF = 280
    NR_PERF_EVENT_OPEN = 241
else:  # x86-64
    NR_BPF = 321
    NR_PERF_EVENT_OPEN = 298

# ---------------------------------------------------------------- bpf commands
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_GET_FD_BY_ID = 30
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_LINK_GET_NEXT_ID = 31
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_DELETE_BATCH = 27
BPF_MAP_FREEZE = 22
BPF_LINK_CREATE = 28
BPF_ITER_CREATE = 33
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25
BPF_TRACE_ITER = 28

BPF_CMD_NAMES = {cmd: name for name, cmd in (
    ("BPF_MAP_CREATE", BPF_MAP_CREATE), ("BPF_MAP_LOOKUP_ELEM", BPF_MAP_LOOKUP_ELEM),
    ("BPF_MAP_UPDATE_ELEM", BPF_MAP_UPDATE_ELEM), ("BPF_MAP_DELETE_ELEM", BPF_MAP_DELETE_ELEM),
    ("BPF_MAP_GET_NEXT_KEY", BPF_MAP_GET_NEXT_KEY), ("BPF_PROG_LOAD", BPF_PROG_LOAD),
    ("BPF_PROG_TEST_RUN", BPF_PROG_TEST_RUN), ("BPF_PROG_GET_NEXT_ID", BPF_PROG_GET_NEXT_ID),
    ("BPF_MAP_GET_NEXT_ID", BPF_MAP_GET_NEXT_ID), ("BPF_PROG_GET_FD_BY_ID", BPF_PROG_GET_FD_BY_ID),
    ("BPF_MAP_GET_FD_BY_ID", BPF_MAP_GET_FD_BY_ID),
    ("BPF_OBJ_GET_INFO_BY_FD", BPF_OBJ_GET_INFO_BY_FD),
    ("BPF_RAW_TRACEPOINT_OPEN", BPF_RAW_TRACEPOINT_OPEN),
    ("BPF_MAP_LOOKUP_BATCH", BPF_MAP_LOOKUP_BATCH), ("BPF_MAP_DELETE_BATCH", BPF_MAP_DELETE_BATCH),
    ("BPF_LINK_CREATE", BPF_LINK_CREATE), ("BPF_LINK_GET_NEXT_ID", BPF_LINK_GET_NEXT_ID),
    ("BPF_MAP_FREEZE", BPF_MAP_FREEZE))}

# size of the attr buffer we pass (kernel accepts any size as long as the
# bytes beyond its own union are zero)
BPF_ATTR_SIZE = 160

# ---------------------------------------------------------------- bpf_attr offsets
# MAP_CREATE
MC_MAP_TYPE = 0
MC_KEY_SIZE = 4
MC_VALUE_SIZE = 8
MC_MAX_ENTRIES = 12
MC_MAP_FLAGS = 16
MC_MAP_NAME = 28
OBJ_NAME_LEN = 16

# MAP_*_ELEM, GET_NEXT_KEY
ME_MAP_FD = 0
ME_KEY = 8
ME_VALUE = 16  # also next_key
ME_FLAGS = 24

# PROG_LOAD
PL_PROG_TYPE = 0
PL_INSN_CNT = 4
PL_INSNS = 8
PL_LICENSE = 16
PL_LOG_LEVEL = 24
PL_LOG_SIZE = 28
PL_LOG_BUF = 32
PL_KERN_VERSION = 40
PL_PROG_FLAGS = 44
PL_PROG_NAME = 48
PL_EXPECTED_ATTACH_TYPE = 68
PL_ATTACH_BTF_ID = 108

# PROG_TEST_RUN
TR_PROG_FD = 0
TR_RETVAL = 4
TR_DATA_SIZE_IN = 8
TR_DATA_SIZE_OUT = 12
TR_DATA_IN = 16
TR_DATA_OUT = 24
TR_REPEAT = 32
TR_DURATION = 36
TR_CTX_SIZE_IN = 40
TR_CTX_SIZE_OUT = 44
TR_CTX_IN = 48
TR_CTX_OUT = 56
TR_FLAGS = 64
TR_CPU = 68
BPF_F_TEST_RUN_ON_CPU = 1 << 0
# raw_tracepoint test runs accept at most MAX_BPF_FUNC_ARGS u64 of context
RAW_TP_MAX_CTX = 12 * 8

# GET_NEXT_ID
GN_START_ID = 0
GN_NEXT_ID = 4

# *_GET_FD_BY_ID
GF_ID = 0

# OBJ_GET_INFO_BY_FD
GI_BPF_FD = 0
GI_INFO_LEN = 4
GI_INFO = 8

# RAW_TRACEPOINT_OPEN
RT_NAME = 0
RT_PROG_FD = 8
RT_COOKIE = 16  # since 6.10

# MAP_LOOKUP_BATCH / DELETE_BATCH
MB_IN_BATCH = 0
MB_OUT_BATCH = 8
MB_KEYS = 16
MB_VALUES = 24
MB_COUNT = 32
MB_MAP_FD = 36
MB_ELEM_FLAGS = 40
MB_FLAGS = 48

# LINK_CREATE
LC_PROG_FD = 0
LC_TARGET_FD = 4
LC_ATTACH_TYPE = 8
LC_FLAGS = 12
LC_PERF_EVENT_BPF_COOKIE = 16
LC_UPROBE_MULTI_PATH = 16       # link_create.uprobe_multi: u64 path, offsets,
LC_UPROBE_MULTI_OFFSETS = 24    # ref_ctr_offsets, cookies (pointers to arrays
LC_UPROBE_MULTI_REF_CTR = 32    # of cnt u64s), then u32 cnt, flags, pid
LC_UPROBE_MULTI_COOKIES = 40
LC_UPROBE_MULTI_CNT = 48
LC_UPROBE_MULTI_FLAGS = 52
LC_UPROBE_MULTI_PID = 56

# ---------------------------------------------------------------- map types
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_STACK_TRACE = 7
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_RINGBUF = 27

PERCPU_MAP_TYPES = frozenset({
    BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_MAP_TYPE_LRU_PERCPU_HASH,
})
ARRAY_MAP_TYPES = frozenset({BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY})

# map update flags
BPF_ANY = 0
BPF_F_RDONLY_PROG = 1 << 7   # map_create: programs may only read it
BPF_NOEXIST = 1
BPF_EXIST = 2

# bpf_perf_event_output / bpf_skb_output flags: the index is the current CPU's
BPF_F_CURRENT_CPU = 0xFFFFFFFF

# ---------------------------------------------------------------- program types
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_PERF_EVENT = 7
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_TRACING = 26

# attach types
BPF_PERF_EVENT = 41
BPF_LINK_TYPE_UPROBE_MULTI = 12     # enum bpf_link_type
BPF_TRACE_UPROBE_MULTI = 48
BPF_F_UPROBE_MULTI_RETURN = 1

# ---------------------------------------------------------------- instructions
BPF_INSN_SIZE = 8
BPF_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2     # imm: the map's fd, the next insn's imm: an offset in its value
# r0 = 0 (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT): the smallest program
BPF_INSNS_RETURN_0 = bytes([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])

# ELF relocation types for EM_BPF
EM_BPF = 247
R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

# ---------------------------------------------------------------- ring buffer
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8

# ---------------------------------------------------------------- perf_event_attr
PERF_ATTR_SIZE = 128
PA_TYPE = 0
PA_SIZE = 4
PA_CONFIG = 8
PA_SAMPLE_PERIOD = 16  # union with sample_freq
PA_SAMPLE_TYPE = 24
PA_READ_FORMAT = 32
PA_FLAGS = 40
PA_WAKEUP_EVENTS = 48
PA_BP_TYPE = 52
PA_CONFIG1 = 56
PA_CONFIG2 = 64

PERF_FLAG_DISABLED = 1 << 0
PERF_FLAG_FREQ = 1 << 10

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5

PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_TASK_CLOCK = 1

PERF_COUNT_SW_BPF_OUTPUT = 10

PERF_SAMPLE_RAW = 1 << 10

# perf_event_header.type of the records in a perf buffer
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9

# struct perf_event_mmap_page (the perf buffer's first page): u64 fields
PERF_MMAP_DATA_HEAD = 1024
PERF_MMAP_DATA_TAIL = 1032
PERF_MMAP_DATA_OFFSET = 1040
PERF_MMAP_DATA_SIZE = 1048

PERF_FLAG_FD_CLOEXEC = 1 << 3

PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408

# ---------------------------------------------------------------- errno extras
ENOTSUPP = 524  # kernel-internal "operation not supported"
