"""The CPUs of this machine, from /sys/devices/system/cpu/{online,possible}."""


def parse_cpu_list(text: str) -> list:
    """"0-3,5" → [0, 1, 2, 3, 5]."""
    out = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def online_cpus() -> list:
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read())


def possible_cpus() -> list:
    with open("/sys/devices/system/cpu/possible") as f:
        return parse_cpu_list(f.read())
