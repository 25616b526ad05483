"""Bad and deviant frames from chargers (interface section 7), over a real WebSocket."""

from __future__ import annotations

import asyncio
import json

import pytest

from connector.protocol import MAX_NAMED_DEVIATIONS, MAX_SAMPLED_VALUES
from connector.tests.conftest import RunningConnector, map_datapoints, start_connector
from connector.tests.harness import MqttProbe, RawLink, frame


def call(name: str, unique_id: str = "m1", **changes: object) -> str:
    action, payload = frame(name, **changes)
    return json.dumps([2, unique_id, action, payload])


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('[2,"m1","BootNotification"]', "FormationViolation"),
        ('[2,"m1","BootNotification",[]]', "FormationViolation"),
        ('[2,"m1",17,{}]', "FormationViolation"),
        ('[2,"m1","NoSuchAction",{}]', "NotImplemented"),
        ('[2,"m1","Reset",{"type":"Hard"}]', "NotSupported"),
        ('[2,"m1","BootNotification",{"chargePointModel":"X"}]', "ProtocolError"),
        (
            '[2,"m1","StatusNotification",{"connectorId":"1","errorCode":"NoError","status":"Available"}]',
            "TypeConstraintViolation",
        ),
        (
            '[2,"m1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-11-21T10:00:00Z",'
            '"sampledValue":[{"unit":"Wh"}]}]}]',
            "ProtocolError",
        ),
    ],
    ids=[
        "no-payload",
        "payload-not-object",
        "action-not-string",
        "unknown-action",
        "central-system-action",
        "required-missing",
        "wrong-type",
        "sampled-value-without-value",
    ],
)
async def test_meaningless_calls_get_the_prescribed_callerror(
    connector: RunningConnector, probe: MqttProbe, text: str, code: str
) -> None:
    """A CALL that leaves no sense to be made of it is answered with the OCPP-J CALLERROR, and logged."""
    async with RawLink(connector.url, "CP_BAD") as link:
        answer = await link.exchange(text)
        assert answer[:3] == [4, "m1", code]
        assert isinstance(answer[3], str) and answer[3]
        # the session goes on
        assert (await link.exchange(call("heartbeat", "m2")))[:2] == [3, "m2"]
    log = await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_BAD: refused"))
    assert log["level"] == 30


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        "[]",
        '["2"]',
        "[2]",
        '[9,"x",{}]',
        '[2, null, "Heartbeat", {}]',
        "[" * 100_000,
        '[2,"n","MeterValues",{"connectorId":1,"meterValue":[],"x":NaN}]',
        '[2,"i","Heartbeat",{"x":1e999}]',
    ],
    ids=[
        "not-json",
        "object",
        "empty",
        "short",
        "no-id",
        "unknown-type",
        "null-id",
        "nested-too-deep",
        "nan",
        "infinity",
    ],
)
async def test_frames_without_an_answerable_id_are_dropped_with_a_log_line(
    connector: RunningConnector, probe: MqttProbe, text: str
) -> None:
    """Where OCPP-J allows no answer the frame is dropped, logged, and the session goes on."""
    async with RawLink(connector.url, "CP_JUNK") as link:
        await link.connection.send(text)
        assert (await link.exchange(call("heartbeat", "after")))[:2] == [3, "after"]
    log = await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_JUNK: dropped frame"))
    assert log["level"] == 30


async def test_numeric_message_id_is_answered_with_the_same_id(connector: RunningConnector) -> None:
    """Some chargers send numbers as unique ids; the answer carries the same id."""
    async with RawLink(connector.url, "CP_NUM") as link:
        answer = await link.exchange('[2, 7, "Heartbeat", {}]')
    assert answer[:2] == [3, 7]


async def test_answer_to_unknown_call_is_ignored(connector: RunningConnector, probe: MqttProbe) -> None:
    """A CALLRESULT nobody asked for is logged and ignored; the session goes on."""
    async with RawLink(connector.url, "CP_X") as link:
        await link.connection.send('[3,"never-sent",{"status":"Accepted"}]')
        assert (await link.exchange(call("heartbeat", "h")))[:2] == [3, "h"]
    log = await probe.wait_for(connector.topic("logs"), lambda p: "never-sent" in p["msg"])
    assert log["msg"] == "CP_X: ignored answer to unknown or expired call never-sent" and log["level"] == 30


async def test_unlisted_enum_values_are_tolerated_and_named_in_the_logs(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """errorCode `Error` is answered as valid, published as sent, and the deviation is logged."""
    topic = connector.topic("v/error")
    await map_datapoints(probe, connector, {"CP_T__StatusNotification__1__error_code": topic}, {})
    async with RawLink(connector.url, "CP_T") as link:
        assert await link.exchange(call("status_error_code_error")) == [3, "m1", {}]
    assert (await probe.wait_for(topic))["value"] == "Error"
    log = await probe.wait_for(connector.topic("logs"), lambda p: "tolerated" in p["msg"] and "Error" in p["msg"])
    assert log["msg"].startswith("CP_T: tolerated schema deviation in StatusNotification")


async def test_padded_numbers_and_unknown_units_are_tolerated(connector: RunningConnector, probe: MqttProbe) -> None:
    """`" 0.0"` is published as the number 0.0 and a unit `Hz` keeps its data flowing."""
    power, frequency = connector.topic("v/power"), connector.topic("v/hz")
    await map_datapoints(
        probe,
        connector,
        {"CP_T__MeterValues__1__Power.Active.Import__W": power, "CP_T__MeterValues__1__Frequency__Hz": frequency},
        {},
    )
    async with RawLink(connector.url, "CP_T") as link:
        assert await link.exchange(call("meter_values_hz_padded")) == [3, "m1", {}]
    assert (await probe.wait_for(power))["value"] == 0.0
    assert (await probe.wait_for(frequency))["value"] == 50.01
    padded = await probe.wait_for(connector.topic("logs"), lambda p: "padded with spaces" in p["msg"])
    assert padded["msg"] == "CP_T: tolerated in MeterValues: value ' 0.0' padded with spaces; read as '0.0'"
    await probe.wait_for(
        connector.topic("logs"), lambda p: "tolerated schema deviation" in p["msg"] and "Hz" in p["msg"]
    )


async def test_empty_sampled_value_is_answered(connector: RunningConnector, probe: MqttProbe) -> None:
    """A meterValue with an empty sampledValue is answered as valid and named in the logs."""
    async with RawLink(connector.url, "CP_T") as link:
        assert await link.exchange(call("meter_values_empty_sampled")) == [3, "m1", {}]
    await probe.wait_for(
        connector.topic("logs"), lambda p: "CP_T: tolerated" in p["msg"] and "sampledValue" in p["msg"]
    )


async def test_repeated_stop_transaction_is_answered_and_counted_once(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """The same StopTransaction twice: both answered, the energy published once."""
    topic, heartbeat = connector.topic("v/energy"), connector.topic("v/heartbeat")
    await map_datapoints(probe, connector, {"CP_T__Transaction__1__energy": topic, "CP_T__Heartbeat": heartbeat}, {})
    async with RawLink(connector.url, "CP_T") as link:
        started = await link.exchange(call("start_transaction", "s"))
        stop = call("stop_transaction", "e1", transactionId=started[2]["transactionId"])
        assert (await link.exchange(stop))[:2] == [3, "e1"]
        assert (await link.exchange(stop.replace('"e1"', '"e2"')))[:2] == [3, "e2"]
        await probe.wait_value(topic, 11500)
        await link.exchange(call("heartbeat", "sync"))
        # Published after the repeat on the same MQTT connection: anything the repeat
        # published would have arrived before it.
        await probe.wait_for(heartbeat)
    assert [p["value"] for p in probe.on(topic)] == [None, 11500]


async def test_extra_fields_do_not_become_datapoints(connector: RunningConnector) -> None:
    """A tolerated extra field in a notification is answered but mints no datapoint key."""
    async with RawLink(connector.url, "CP_E") as link:
        frame_text = '[2,"f","FirmwareStatusNotification",{"status":"Installed","madeUp":"x"}]'
        assert await link.exchange(frame_text) == [3, "f", {}]
    sensors = connector.service.registry.sensors
    assert sensors["CP_E__FirmwareStatusNotification__status"].value == "Installed"
    assert not any("made_up" in k for k in sensors)


def meter_values_with_invented_measurands(unique_id: str, count: int) -> str:
    """A compact MeterValues.req (under the 1 MiB frame limit) with `count` measurands OCPP 1.6 does not list."""
    samples = [{"value": "1", "measurand": f"X{n}"} for n in range(count)]
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": samples}]}
    return json.dumps([2, unique_id, "MeterValues", payload], separators=(",", ":"))


async def test_a_frame_of_25000_invented_measurands_is_answered_and_bounded(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """Such a frame is answered, its values beyond MAX_SAMPLED_VALUES skipped and named once, few deviations named."""
    running = await start_connector({**settings_env, "OCPP_MAX_KEYS_PER_CHARGE_POINT": "100000"}, probe)
    big = meter_values_with_invented_measurands("big", 25_000)
    assert len(big) < 1_048_576
    try:
        async with RawLink(running.url, "CP_BIG") as link:
            assert await link.exchange(big) == [3, "big", {}]
            assert await link.exchange(big) == [3, "big", {}]
            # Logged after everything the two frames logged, on the same MQTT connection.
            assert (await link.exchange('[2,"end","NoSuchAction",{}]'))[:3] == [4, "end", "NotImplemented"]
            await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith("CP_BIG: refused NoSuchAction"))
    finally:
        await running.stop()
    logs = [p["msg"] for p in probe.on(running.topic("logs")) if p["msg"].startswith("CP_BIG: ")]
    skipped = f"CP_BIG: MeterValues with more than {MAX_SAMPLED_VALUES} sampled values: answered, the 23000 beyond"
    assert [line for line in logs if line.startswith(skipped)] == [f"{skipped} them skipped"]
    assert len([line for line in logs if "tolerated schema deviation" in line]) == MAX_NAMED_DEVIATIONS
    sensors = running.service.registry.sensors
    assert f"CP_BIG__MeterValues__1__X{MAX_SAMPLED_VALUES - 1}__Wh" in sensors
    assert f"CP_BIG__MeterValues__1__X{MAX_SAMPLED_VALUES}__Wh" not in sensors


async def test_an_honest_charger_is_answered_while_another_sends_huge_frames(connector: RunningConnector) -> None:
    """While one connection sends frames of 25,000 invented measurands back to back, another's calls are answered."""
    flooding, honest_done = asyncio.Event(), asyncio.Event()
    big = meter_values_with_invented_measurands("big", 25_000)
    answered_big = 0

    async def flood() -> None:
        nonlocal answered_big
        async with RawLink(connector.url, "CP_FLOOD") as link:
            while not honest_done.is_set():  # until the honest charger is through
                assert await link.exchange(big) == [3, "big", {}]
                answered_big += 1
                flooding.set()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(flood())
        await flooding.wait()
        async with RawLink(connector.url, "CP_HONEST") as honest:
            for n in range(3):
                assert (await honest.exchange(call("heartbeat", f"h{n}")))[:2] == [3, f"h{n}"]
        honest_done.set()
    assert answered_big >= 1


async def test_a_charger_sending_junk_in_a_loop_gets_a_few_log_lines_not_one_per_frame(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """300 unreadable frames and 300 unknown actions from one charger: each answered as due, one WARNING per kind."""
    async with RawLink(connector.url, "CP_JUNK") as link:
        for number in range(300):
            await link.connection.send("not json")
            assert await link.exchange(json.dumps([2, f"u{number}", "NoSuchAction", {}])) == [
                4,
                f"u{number}",
                "NotImplemented",
                "unknown action 'NoSuchAction'",
                {},
            ]
        heartbeat = await link.exchange('[2, "h", "Heartbeat", {}]')
    assert heartbeat[:2] == [3, "h"] and "currentTime" in heartbeat[2]
    await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_JUNK: disconnected"))
    lines = [p["msg"] for p in probe.on(connector.topic("logs")) if p["msg"].startswith("CP_JUNK: ")]
    assert len([line for line in lines if line.startswith("CP_JUNK: dropped frame")]) == 1
    assert len([line for line in lines if line.startswith("CP_JUNK: refused NoSuchAction")]) == 1
