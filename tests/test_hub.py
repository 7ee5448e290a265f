"""The broadcast hub on its own: ordering, waking, conflation, leaving."""

import threading

import pytest

from botmon.hub import Hub, Message


@pytest.fixture
def hub() -> Hub:
    return Hub()


def subscribe(hub: Hub):
    wake = threading.Event()
    return hub.subscribe(wake), wake


def test_publish_makes_each_snapshot_the_latest_under_its_id(hub):
    first = hub.publish("a", 1)
    second = hub.publish("b", 2)

    assert first == Message(1, "a")
    assert second == Message(2, "b")
    assert hub.latest is second


def test_a_snapshot_no_newer_than_the_latest_is_ignored(hub):
    subscription, wake = subscribe(hub)
    hub.publish("five", 5)
    assert subscription.next_message() == Message(5, "five")
    wake.clear()

    assert hub.publish("three", 3) is None
    assert hub.publish("five again", 5) is None

    assert hub.latest == Message(5, "five")
    assert not wake.is_set()
    assert subscription.next_message() is None


def test_snapshots_arriving_out_of_order_never_take_a_listener_back(hub):
    subscription, _ = subscribe(hub)
    received = []
    for snapshot_id in (2, 1, 4, 3, 4, 6, 5):
        hub.publish(str(snapshot_id), snapshot_id)
        message = subscription.next_message()
        if message is not None:
            received.append(message.snapshot_id)

    assert received == [2, 4, 6]
    assert hub.latest == Message(6, "6")


def test_ids_may_skip_numbers(hub):
    assert hub.publish("a", 7) == Message(7, "a")
    assert hub.publish("b", 40) == Message(40, "b")


def test_a_new_hub_has_nothing_and_no_one(hub):
    assert hub.latest is None
    assert hub.listener_count == 0
    assert not hub.closing


def test_a_subscriber_before_any_publish_is_not_woken_and_gets_nothing(hub):
    subscription, wake = subscribe(hub)

    assert not wake.is_set()
    assert subscription.next_message() is None


def test_publish_wakes_a_subscriber_with_the_new_message(hub):
    subscription, wake = subscribe(hub)

    hub.publish("a", 1)

    assert wake.is_set()
    assert subscription.next_message() == Message(1, "a")


def test_a_subscriber_after_a_publish_is_woken_at_once_with_the_latest(hub):
    hub.publish("a", 1)
    hub.publish("b", 2)

    subscription, wake = subscribe(hub)

    assert wake.is_set()
    assert subscription.next_message() == Message(2, "b")


def test_a_message_is_given_to_a_subscriber_once(hub):
    subscription, _ = subscribe(hub)
    hub.publish("a", 1)

    assert subscription.next_message() == Message(1, "a")
    assert subscription.next_message() is None


def test_a_subscriber_that_falls_behind_gets_only_the_newest(hub):
    subscription, _ = subscribe(hub)
    for snapshot_id, text in enumerate(("a", "b", "c"), start=1):
        hub.publish(text, snapshot_id)

    assert subscription.next_message() == Message(3, "c")
    assert subscription.next_message() is None
    hub.publish("d", 4)
    assert subscription.next_message() == Message(4, "d")


def test_every_subscriber_keeps_its_own_place(hub):
    early, early_wake = subscribe(hub)
    hub.publish("a", 1)
    assert early.next_message().snapshot_id == 1
    late, _ = subscribe(hub)
    hub.publish("b", 2)

    early_wake.clear()
    assert early.next_message().snapshot_id == 2
    assert late.next_message().snapshot_id == 2
    assert early.next_message() is None
    assert late.next_message() is None


def test_the_hub_keeps_one_message_however_many_are_published(hub):
    subscription, _ = subscribe(hub)
    for number in range(1000):
        hub.publish(str(number), number + 1)

    assert hub.latest == Message(1000, "999")
    assert subscription.next_message() is hub.latest


def test_close_wakes_every_subscriber(hub):
    subscriptions = [subscribe(hub) for _ in range(3)]

    hub.close()

    assert hub.closing
    assert all(wake.is_set() for _, wake in subscriptions)


def test_a_subscriber_after_close_is_woken_at_once(hub):
    hub.close()

    _, wake = subscribe(hub)

    assert wake.is_set()


def test_close_twice_is_harmless(hub):
    subscribe(hub)
    hub.close()
    hub.close()

    assert hub.closing


def test_unsubscribe_leaves_the_hub_and_stops_the_wake_ups(hub):
    staying, staying_wake = subscribe(hub)
    leaving, leaving_wake = subscribe(hub)
    assert hub.listener_count == 2

    leaving.close()
    leaving.close()
    hub.publish("a", 1)
    hub.close()

    assert hub.listener_count == 1
    assert staying_wake.is_set()
    assert not leaving_wake.is_set()


def test_a_subscriber_may_leave_while_the_hub_wakes_everyone(hub):
    class LeavingWake(threading.Event):
        subscription = None

        def set(self) -> None:
            super().set()
            self.subscription.close()

    wakes = [LeavingWake() for _ in range(5)]
    for wake in wakes:
        wake.subscription = hub.subscribe(wake)

    hub.publish("a", 1)

    assert all(wake.is_set() for wake in wakes)
    assert hub.listener_count == 0


def test_subscribers_waiting_in_threads_are_woken_by_publish(hub):
    received = []

    def listen() -> None:
        subscription, wake = subscribe(hub)
        ready.release()
        assert wake.wait(5)
        received.append(subscription.next_message())

    ready = threading.Semaphore(0)
    threads = [threading.Thread(target=listen) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert ready.acquire(timeout=5)

    hub.publish("a", 1)
    for thread in threads:
        thread.join(5)

    assert received == [Message(1, "a")] * 4
