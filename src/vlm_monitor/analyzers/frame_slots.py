"""Frames in shared memory for the analyzer processes: per stream, a few slot files (in
/dev/shm where the OS has it) the server writes each frame into once, for every analyzer of
the stream, and the processes map read-only (see ``processes``)."""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlm_monitor.types import Frame


class StreamStopped(RuntimeError):
    """A frame for a stream whose analyzers have stopped."""


def slot_dir() -> Path:
    shm = Path("/dev/shm")  # memory, not disk, where the OS has it
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


SLOT_PREFIX = "vlm-monitor-"  # then the server's pid


def remove_orphans(directory: Path) -> int:
    """Slot files of servers that are gone (killed before they could remove them)."""
    removed = 0
    for path in directory.glob(f"{SLOT_PREFIX}*"):
        pid = path.name[len(SLOT_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@dataclass
class Slot:
    path: Path
    mm: mmap.mmap
    capacity: int
    key: tuple[int, tuple[int, ...]] | None = None  # (frame seq, shape) it holds
    users: int = 0


class StreamSlots:
    """One stream's frames in shared memory. A frame that several analyzers ask for is written
    once; a slot is reused once no job reads it, so there are never more slots than the
    stream's jobs in flight plus one."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._slots: list[Slot] = []
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._closed = False

    def put(self, frame: Frame, image: np.ndarray) -> tuple[Slot, list[str]]:
        """The slot holding ``image`` (written now, or already) and the paths of slot files
        replaced by bigger ones (the process should let go of them). Blocking: a thread."""
        key = (frame.seq, image.shape)
        with self._lock:
            if self._closed:  # a job queued before its stream was removed
                raise StreamStopped("the stream's analyzers were stopped")
            for slot in self._slots:
                if slot.key == key:
                    slot.users += 1
                    return slot, []
            free = [s for s in self._slots if s.users == 0]
            retired: list[str] = []
            if free:
                slot = min(free, key=lambda s: -1 if s.key is None else s.key[0])
                if slot.capacity < image.nbytes:
                    retired.append(str(slot.path))
                    self._drop(slot)
                    self._slots.remove(slot)
                    slot = self._new(image.nbytes)
            else:
                slot = self._new(image.nbytes)
            view = np.frombuffer(slot.mm, np.uint8, count=image.nbytes).reshape(image.shape)
            np.copyto(view, image)
            slot.key, slot.users = key, 1
            return slot, retired

    def release(self, slot: Slot) -> None:
        with self._lock:
            slot.users -= 1

    def close(self) -> list[str]:
        """Removes the files (a process that has one mapped keeps reading it); their paths."""
        with self._lock:
            self._closed = True
            paths = [str(s.path) for s in self._slots]
            for slot in self._slots:
                self._drop(slot)
            self._slots.clear()
            return paths

    def _new(self, size: int) -> Slot:
        path = Path(f"{self._prefix}-{next(self._names)}")
        with path.open("w+b") as f:
            f.truncate(size)
            mm = mmap.mmap(f.fileno(), size)
        slot = Slot(path, mm, size)
        self._slots.append(slot)
        return slot

    @staticmethod
    def _drop(slot: Slot) -> None:
        with contextlib.suppress(BufferError):  # a view still alive: freed with it
            slot.mm.close()
        slot.path.unlink(missing_ok=True)
