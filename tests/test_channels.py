from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User

from django_sse import channels, user_channel
from django_sse.channels import AlreadyRegistered, ChannelError, Registry
from django_sse.stream import authorize

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


@pytest.fixture
def registry() -> Iterator[Registry]:
    yield Registry()


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("boss", is_staff=True)


async def allowed(reg: Registry, user: Any, name: str) -> bool:
    try:
        await reg.authorize(user, name)
    except ChannelError as exc:
        assert exc.status == 403
        return False
    return True


def test_register_returns_registration_and_decorator_returns_function(registry: Registry) -> None:
    reg = registry.register("a", channels.PUBLIC)
    assert reg.pattern == "a"

    @registry.register("t:{pk}")
    def check(user: Any, pk: str) -> bool:
        return True

    assert callable(check)
    found = registry.resolve("t:9")
    assert found is not None and found[0].policy is check and found[1] == {"pk": "9"}


def test_duplicate_and_malformed_patterns_are_refused(registry: Registry) -> None:
    registry.register("a", channels.PUBLIC)
    with pytest.raises(AlreadyRegistered):
        registry.register("a", channels.STAFF)
    with pytest.raises(AlreadyRegistered, match="built in"):
        registry.register("user:{pk}", channels.PUBLIC)
    for bad in ["", "a b", "{x", "t:{1x}", "t:{a}:{a}", "-x"]:
        with pytest.raises(ValueError):
            registry.register(bad, channels.PUBLIC)
    with pytest.raises(TypeError, match="policy must be"):
        registry.register("b", 42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="policy must be"):
        registry.register("c", "not a permission")


def test_most_specific_pattern_wins(registry: Registry) -> None:
    registry.register("room:{name}", channels.STAFF)
    registry.register("room:lobby", channels.PUBLIC)
    registry.register("room:{a}.{b}", channels.AUTHENTICATED)
    assert registry.resolve("room:lobby")[0].pattern == "room:lobby"  # type: ignore[index]
    assert registry.resolve("room:x")[0].pattern == "room:{name}"  # type: ignore[index]
    # A placeholder never spans ":".
    assert registry.resolve("room:a:b") is None
    assert registry.resolve("nothing") is None


def test_resolutions_are_remembered_and_forgotten_when_patterns_change(
    registry: Registry,
) -> None:
    registry.register("doc:{pk}", channels.PUBLIC)
    found = registry.resolve("doc:7")
    assert found is not None and found[1] == {"pk": "7"}
    found[1]["pk"] = "changed by the caller"
    again = registry.resolve("doc:7")
    assert again is not None and again[1] == {"pk": "7"}  # a copy each time
    assert registry.resolve("doc:7:edit") is None
    registry.register("doc:{pk}:edit", channels.STAFF)
    edit = registry.resolve("doc:7:edit")  # a remembered miss does not hide it
    assert edit is not None and edit[0].pattern == "doc:{pk}:edit"
    registry.unregister("doc:{pk}:edit")
    assert registry.resolve("doc:7:edit") is None


def test_hostile_names_do_not_grow_the_remembered_resolutions(registry: Registry) -> None:
    from django_sse.channels import RESOLVED_KEPT

    for n in range(RESOLVED_KEPT * 3):
        registry.resolve(f"nothing:{n}")
    assert len(registry._resolved) <= RESOLVED_KEPT


def test_a_resolution_matched_while_patterns_changed_is_not_remembered(
    registry: Registry,
) -> None:
    """Another thread registers a pattern while this one matches a name against
    the old patterns: the old answer is returned once, never remembered."""
    match = registry._match

    def racing(name: str) -> Any:
        found = match(name)
        registry.register("doc:{pk}:edit", channels.STAFF)  # meanwhile, elsewhere
        return found

    registry._match = racing  # type: ignore[method-assign]
    assert registry.resolve("doc:7:edit") is None
    registry._match = match  # type: ignore[method-assign]
    found = registry.resolve("doc:7:edit")
    assert found is not None and found[0].pattern == "doc:{pk}:edit"


def test_resolving_on_threads_while_patterns_change(registry: Registry) -> None:
    """The view door resolves on Django's threads: no error while another
    thread registers and unregisters, and the answers are right afterwards."""
    import threading

    errors: list[BaseException] = []
    done = threading.Event()

    def resolve() -> None:
        try:
            while not done.is_set():
                for n in range(50):
                    registry.resolve(f"t{n % 7}:x")
        except BaseException as exc:  # pragma: no cover - the failure shown
            errors.append(exc)

    threads = [threading.Thread(target=resolve) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(200):
            for n in range(7):
                registry.register(f"t{n}:{{v}}", channels.PUBLIC)
            for n in range(7):
                registry.unregister(f"t{n}:{{v}}")
        registry.register("t3:{v}", channels.PUBLIC)
    finally:
        done.set()
        for t in threads:
            t.join(10)
    assert not errors
    assert [registry.resolve(f"t{n}:x") is not None for n in range(7)] == [n == 3 for n in range(7)]


def test_a_registration_changed_after_it_was_resolved_is_seen(registry: Registry) -> None:
    reg = registry.register("room:{name}", channels.PUBLIC)
    assert registry.is_stored("room:a")  # remembered now
    reg.ephemeral = True  # an attribute set on the Registration afterwards
    assert not registry.is_stored("room:a")
    found = registry.resolve("room:a")
    assert found is not None and found[0] is reg


def test_names_no_channel_can_have_are_not_remembered(registry: Registry) -> None:
    registry.register("doc:{pk}", channels.PUBLIC)
    long = "doc:" + "9" * 5000
    assert registry.resolve(long) is not None  # answered as before
    assert long not in registry._resolved
    assert "doc:1" not in registry._resolved
    registry.resolve("doc:1")
    assert "doc:1" in registry._resolved


async def test_builtin_policies(registry: Registry, alice: User, staff: User) -> None:
    registry.register("pub", channels.PUBLIC)
    registry.register("auth", channels.AUTHENTICATED)
    registry.register("staff", channels.STAFF)
    registry.register("perm", "auth.view_user")
    anon = AnonymousUser()
    assert await allowed(registry, anon, "pub")
    assert not await allowed(registry, anon, "auth")
    assert await allowed(registry, alice, "auth")
    assert not await allowed(registry, alice, "staff")
    assert await allowed(registry, staff, "staff")
    assert not await allowed(registry, alice, "perm")
    assert not await allowed(registry, anon, "perm")
    await alice.user_permissions.aadd(
        await Permission.objects.aget(codename="view_user", content_type__app_label="auth")
    )
    fresh = await User.objects.aget(pk=alice.pk)  # permission caches are per instance
    assert await allowed(registry, fresh, "perm")


async def test_sync_and_async_callables_get_placeholders(registry: Registry, alice: User) -> None:
    seen: list[tuple[str, str]] = []

    @registry.register("doc:{pk}")
    def sync_check(user: Any, pk: str) -> bool:
        # Runs in a thread: the ORM works here.
        seen.append(("sync", pk))
        return User.objects.filter(pk=user.pk).exists() and pk == "1"

    @registry.register("feed:{owner}.{kind}")
    async def async_check(user: Any, owner: str, kind: str) -> bool:
        seen.append(("async", f"{owner}/{kind}"))
        return kind == "open"

    assert await allowed(registry, alice, "doc:1")
    assert not await allowed(registry, alice, "doc:2")
    assert await allowed(registry, alice, "feed:bob.open")
    assert not await allowed(registry, alice, "feed:bob.shut")
    assert ("sync", "1") in seen and ("async", "bob/open") in seen


async def test_a_raising_check_denies_and_logs(
    registry: Registry, alice: User, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.register("boom")
    def broken(user: Any) -> bool:
        raise RuntimeError("bug in app code")

    assert not await allowed(registry, alice, "boom")
    assert "bug in app code" in caplog.text


async def test_unregistered_channel_is_404(registry: Registry, alice: User) -> None:
    with pytest.raises(ChannelError) as info:
        await registry.authorize(alice, "nowhere")
    assert info.value.status == 404 and "nowhere" in info.value.reason


async def test_user_channel_is_readable_by_its_owner_only(alice: User, staff: User) -> None:
    name = user_channel(alice)
    assert name == f"user:{alice.pk}"
    assert await allowed(channels.registry, alice, name)
    assert not await allowed(channels.registry, staff, name)
    assert not await allowed(channels.registry, AnonymousUser(), name)


def test_user_channel_needs_a_saved_user() -> None:
    with pytest.raises(ValueError):
        user_channel(AnonymousUser())
    with pytest.raises(ValueError):
        user_channel(User(username="unsaved"))


def test_sse_modules_are_autodiscovered() -> None:
    patterns = {reg.pattern for reg in channels.registry}
    assert {"public", "news:{topic}", "ticket:{pk}", "room:{name}", "user:{pk}"} <= patterns


async def test_authorize_checks_everything_before_anything(alice: User) -> None:
    async def status(names: list[str]) -> int:
        try:
            await authorize(alice, names)
        except ChannelError as exc:
            return exc.status
        return 200

    assert await status(["public", "members"]) == 200
    assert await status([]) == 400
    assert await status(["public", "bad name"]) == 400
    assert await status(["public", "nowhere"]) == 404
    assert await status(["public", "staff"]) == 403
    assert await status([f"news:{i}" for i in range(11)]) == 400
    assert await status(["public"] * 50) == 200  # duplicates collapse


async def test_callable_objects_sync_and_async(registry: Registry, alice: User) -> None:
    class AsyncCheck:
        async def __call__(self, user: Any, pk: str) -> bool:
            return pk == "1"

    class SyncCheck:
        def __call__(self, user: Any, pk: str) -> bool:
            return pk == "2"

    registry.register("a:{pk}", AsyncCheck())
    registry.register("s:{pk}", SyncCheck())
    assert await allowed(registry, alice, "a:1")
    assert not await allowed(registry, alice, "a:2")
    assert await allowed(registry, alice, "s:2")
    assert not await allowed(registry, alice, "s:1")


def publish_status(reg: Registry, user: Any, name: object) -> int:
    try:
        reg.authorize_publish(user, name)
    except ChannelError as exc:
        assert "\n" not in exc.reason and exc.reason
        return exc.status
    return 200


def test_publish_needs_the_permission_by_default(registry: Registry, alice: User) -> None:
    registry.register("a", channels.PUBLIC)
    assert publish_status(registry, alice, "a") == 403
    assert publish_status(registry, AnonymousUser(), "a") == 403
    alice.user_permissions.add(Permission.objects.get(codename="publish_event"))
    publisher = User.objects.get(pk=alice.pk)  # a fresh permission cache
    assert publish_status(registry, publisher, "a") == 200
    assert publish_status(registry, publisher, "nowhere") == 400
    assert publish_status(registry, publisher, "bad name") == 400
    assert publish_status(registry, publisher, 7) == 400


def test_publish_policies_of_every_kind(registry: Registry, alice: User, staff: User) -> None:
    class AsyncPublisher:
        async def __call__(self, user: Any, pk: str) -> bool:
            return pk == "1"

    async def async_function(user: Any, pk: str) -> bool:
        return pk == "2"

    def raises(user: Any) -> bool:
        raise RuntimeError("bug in app code")

    registry.register("open", channels.PUBLIC, publish=channels.PUBLIC)
    registry.register("closed", channels.PUBLIC, publish=channels.NOBODY)
    registry.register("staff-only", channels.PUBLIC, publish=channels.STAFF)
    registry.register("members", channels.PUBLIC, publish=channels.AUTHENTICATED)
    registry.register("obj:{pk}", channels.PUBLIC, publish=AsyncPublisher())
    registry.register("fn:{pk}", channels.PUBLIC, publish=async_function)
    registry.register("boom", channels.PUBLIC, publish=raises)

    @registry.register("deco:{pk}", publish=lambda user, pk: pk == "3")
    def read(user: Any, pk: str) -> bool:
        return True

    anonymous = AnonymousUser()
    assert publish_status(registry, anonymous, "open") == 200
    assert publish_status(registry, staff, "closed") == 403
    assert [publish_status(registry, u, "staff-only") for u in (alice, staff)] == [403, 200]
    assert [publish_status(registry, u, "members") for u in (anonymous, alice)] == [403, 200]
    assert [publish_status(registry, alice, f"obj:{n}") for n in (1, 2)] == [200, 403]
    assert [publish_status(registry, alice, f"fn:{n}") for n in (1, 2)] == [403, 200]
    assert [publish_status(registry, alice, f"deco:{n}") for n in (3, 4)] == [200, 403]
    assert publish_status(registry, alice, "boom") == 403
    with pytest.raises(TypeError, match="publish policy"):
        registry.register("bad", channels.PUBLIC, publish=42)  # type: ignore[arg-type]


def test_another_users_channel_is_never_open_to_publishing(alice: User) -> None:
    everything = User.objects.create_superuser("root")
    assert publish_status(channels.registry, everything, user_channel(alice)) == 403
    assert publish_status(channels.registry, everything, user_channel(everything)) == 200
    assert publish_status(channels.registry, alice, user_channel(alice)) == 403  # no permission


def test_require_names_sse_py_for_an_unregistered_channel() -> None:
    assert channels.registry.require("news:x")[1] == {"topic": "x"}
    with pytest.raises(ValueError, match=r"'nowhere' matches no registered .*sse\.py"):
        channels.registry.require("nowhere")
