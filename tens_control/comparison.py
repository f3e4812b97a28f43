"""N-of-1 program comparisons: which TENS program helps this patient? (issue 17)

A clinician names two to four programs, a block length and a number of blocks per program;
tens-control draws a **randomised, balanced block schedule** from a seed, as N-of-1 trials do:
the schedule is made of cycles, and each cycle has one block of every program in a random order
(for two programs, each pair of blocks in random order). The schedule is part of the
prescription (:class:`ProgramComparison`), so it is signed with it and cannot be changed on the
patient's computer; the same seed always gives the same schedule.

The patient is offered the scheduled program of the day; choosing another is allowed (the
patient can always lower, stop or change) and counted as a deviation. The first
``washout_days`` days of every block that follows another program's block are a wash-out: the
block's program is used, but those days' ratings are left out of the analysis (carry-over from
the block before).

The analysis is ``tens_control/review/comparison.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from tens_control.programs import ProgramName

MIN_PROGRAMS = 2
MAX_PROGRAMS = 4


@dataclass(frozen=True, slots=True)
class Block:
    """One block of the schedule: a program for ``days`` consecutive days."""

    index: int
    """Position in the schedule, from 0."""
    cycle: int
    """Which round of the programs it belongs to, from 0 (one block of each program a cycle)."""
    program: str
    first_day: date
    last_day: date
    washout_until: date | None
    """Its first days, up to and including this one, are a wash-out (None: none)."""

    def contains(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day

    def is_washout(self, day: date) -> bool:
        return self.washout_until is not None and day <= self.washout_until


class ProgramComparison(BaseModel):
    """The comparison part of a prescription."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    programs: Annotated[
        tuple[ProgramName, ...], Field(min_length=MIN_PROGRAMS, max_length=MAX_PROGRAMS)
    ]
    """The programs compared (each must be one the prescription allows)."""
    start: date
    """The first day of the first block (the patient's local calendar day)."""
    block_days: Annotated[int, Field(ge=2, le=28)] = 7
    blocks_per_program: Annotated[int, Field(ge=2, le=8)] = 3
    seed: Annotated[int, Field(ge=0, le=2**31)]
    washout_days: Annotated[int, Field(ge=0, le=3)] = 0

    @model_validator(mode="after")
    def _consistent(self) -> ProgramComparison:
        if len(set(self.programs)) != len(self.programs):
            raise ValueError("comparison: a program is named twice")
        if self.washout_days >= self.block_days:
            raise ValueError("comparison: the wash-out must be shorter than a block")
        return self

    def schedule(self) -> tuple[Block, ...]:
        """The whole schedule, drawn from the seed: one block of every program per cycle, in a
        random order within each cycle (balanced, reproducible)."""
        rng = random.Random(f"tens-control comparison {self.seed}")
        blocks: list[Block] = []
        day = self.start
        for cycle in range(self.blocks_per_program):
            order = list(self.programs)
            rng.shuffle(order)
            for program in order:
                last = day + timedelta(days=self.block_days - 1)
                washout = (
                    day + timedelta(days=self.washout_days - 1)
                    if blocks and self.washout_days and blocks[-1].program != program
                    else None
                )
                blocks.append(Block(len(blocks), cycle, program, day, last, washout))
                day = last + timedelta(days=1)
        return tuple(blocks)

    @property
    def end(self) -> date:
        """The last day of the last block."""
        days = self.block_days * self.blocks_per_program * len(self.programs)
        return self.start + timedelta(days=days - 1)

    def block_on(self, day: date) -> Block | None:
        """The block scheduled on ``day`` (None before the start or after the end)."""
        if not self.start <= day <= self.end:
            return None
        index = (day - self.start).days // self.block_days
        return self.schedule()[index]

    def program_on(self, day: date) -> str | None:
        block = self.block_on(day)
        return None if block is None else block.program

    def log_data(self, day: date, program: str) -> dict[str, JsonValue] | None:
        """What a session's log says about the schedule: the block (from 1), the scheduled and
        the used program, whether it is a deviation or a wash-out day; None off the schedule."""
        block = self.block_on(day)
        if block is None:
            return None
        return {
            "block": block.index + 1,
            "cycle": block.cycle + 1,
            "scheduled": block.program,
            "program": program,
            "deviation": program != block.program,
            "washout": block.is_washout(day),
        }

    def describe(self) -> str:
        """One line for people: the programs, the blocks and how long it runs."""
        cycles = self.blocks_per_program
        washout = ""
        if self.washout_days:
            days = (
                "1 wash-out day" if self.washout_days == 1 else f"{self.washout_days} wash-out days"
            )
            washout = f"; {days} at the start of a block after another program's"
        return (
            f"{' vs '.join(self.programs)}: {cycles} blocks of {self.block_days} days per "
            f"program ({cycles * len(self.programs)} blocks, in a random order within each "
            f"cycle, seed {self.seed}), {self.start.isoformat()} to {self.end.isoformat()}"
            + washout
        )


__all__ = ["Block", "ProgramComparison"]
