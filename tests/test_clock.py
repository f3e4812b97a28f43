from drivers.clock import VirtualClock


def test_virtual_clock_runs_callbacks_in_time_order_and_jumps_to_deadlines() -> None:
    clock = VirtualClock()
    seen: list[tuple[float, str]] = []
    clock.call_later(0.5, lambda: seen.append((clock.now(), "b")))
    clock.call_later(0.2, lambda: seen.append((clock.now(), "a")))
    clock.call_later(0.5, lambda: seen.append((clock.now(), "c")))
    clock.advance(1.0)
    assert seen == [(0.2, "a"), (0.5, "b"), (0.5, "c")]
    assert clock.now() == 1.0


def test_wait_until_stops_at_the_event_that_makes_the_predicate_true() -> None:
    clock = VirtualClock()
    flag: list[bool] = []
    clock.call_later(0.3, lambda: flag.append(True))
    clock.call_later(5.0, lambda: flag.append(False))
    assert clock.wait_until(lambda: bool(flag), timeout=1.0)
    assert clock.now() == 0.3
    assert flag == [True]


def test_wait_until_times_out_at_exactly_the_deadline() -> None:
    clock = VirtualClock(start=10.0)
    assert not clock.wait_until(lambda: False, timeout=2.5)
    assert clock.now() == 12.5


def test_cancelled_callbacks_never_run() -> None:
    clock = VirtualClock()
    ran: list[int] = []
    handle = clock.call_later(0.1, lambda: ran.append(1))
    handle.cancel()
    clock.advance(1.0)
    assert ran == []
    assert clock.pending() == 0


def test_waiting_inside_a_callback_is_refused() -> None:
    clock = VirtualClock()
    errors: list[Exception] = []

    def bad() -> None:
        try:
            clock.sleep(1.0)
        except RuntimeError as error:
            errors.append(error)

    clock.call_soon(bad)
    clock.advance(0.1)
    assert len(errors) == 1
