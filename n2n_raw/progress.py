"""Progress reporting: a tqdm bar with ETA on a terminal, plain log lines when not on one."""
from __future__ import annotations

import sys
import time


class ProgressHook:
    """Callable ``hook(done, total)``; also ``hook.message(text)`` and ``hook.close()``.

    On a terminal it drives a tqdm bar (ETA, rate, optional postfix); otherwise it prints a line at most every
    ``every_s`` seconds and at the end, so logs of batch jobs stay short.
    """

    def __init__(self, desc: str, unit: str = "it", every_s: float = 10.0, stream=None, enabled: bool = True):
        self.desc, self.unit, self.every_s = desc, unit, every_s
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.bar = None
        self.t0 = self.t_last = time.perf_counter()
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, done: int, total: int, **postfix) -> None:
        if not self.enabled:
            return
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, dynamic_ncols=True, file=self.stream)
            self.bar.update(done - self.bar.n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            return
        now = time.perf_counter()
        if done >= total or now - self.t_last >= self.every_s:
            self.t_last = now
            rate = done / max(now - self.t0, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            extra = "".join(f" {k} {v}" for k, v in postfix.items())
            print(f"{self.desc}: {done}/{total} {self.unit} ({rate:.1f}/s, ETA {eta:.0f} s){extra}",
                  file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
