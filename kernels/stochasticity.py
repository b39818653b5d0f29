"""The STORI stochasticity taxonomy as typed, composable profiles, and their string form.

A *specification* is a tuple of profiles applied together. Each profile is a frozen pytree
dataclass: its kind and modes are static fields (changing them recompiles), every probability,
radius and threshold is a leaf (traced under `jit`, so one compiled call can `vmap` over them).

=========  ===============================  ==========================================================
STORI      kind (string form)               effect
=========  ===============================  ==========================================================
1          ``action:p=P``                   with prob. P the action is replaced by a uniform action
1 (MinAtar) ``sticky:p=P``                  with prob. P the previously executed action is repeated
2.1        ``event:mode=NAME,p=P``          a game-specific random event is armed with prob. P
2.2        ``drift:mode=sudden|cyclic,      from step T of the episode (sudden), or in alternate
           at=T,to=(SPEC)``                 blocks of T steps (cyclic), SPEC is active as well
3.1        ``plain``                        the unmodified game (identity)
3.2        ``mask:kind=crop,region=R,p=P``  with prob. P hide the left/right/top/bottom half
3.2        ``mask:kind=torch,radius=R,      with prob. P keep only cells within Euclidean distance R
           centre=agent|random,p=P``        of the agent (or of a uniformly random cell)
3.2        ``mask:kind=blackout,            with prob. P hide one named game object (channels) or
           region=NAME,p=P``                everything (``all``)
3.2        ``mask:kind=dropout,p=P``        each feature of a vector observation is hidden (set to 0)
                                            independently with prob. P (per agent per feature)
=========  ===============================  ==========================================================

Grammar (profiles joined by ``+``; ``to=`` nests a whole specification in parentheses)::

    SPEC    := PROFILE ("+" PROFILE)*
    PROFILE := KIND [":" KEY "=" VALUE ("," KEY "=" VALUE)*]

Keys left out take the defaults below, chosen from STORI's paper profiles (type 1 p=0.3,
Breakout type 2.1 p=0.25, crop p=0.75, torch and blackout p=1.0, sudden drift at step 300) and
MinAtar's sticky-action probability 0.1; dropout (not in STORI, our choice) p=0.1. `format_spec`
writes every key, so ``parse_spec(format_spec(s)) == s`` for every specification.

Where each kind applies: the Atari-style games (`agentlab.kernels.atari`) implement every kind except
``dropout`` (their observations are images); every other kernel gets the generic kinds (``action``,
``sticky``, ``drift`` and, for vector observations, ``mask:kind=dropout``) from the wrapper
`agentlab.kernels.wrappers.Stochastic`. ``event`` and the image masks stay game-specific.

Order within a step: drift decides which profiles are active; sticky, then action noise,
transform the action; the game steps (events inside it); masks transform the observation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from agentlab.errors import UsageError, choices
from agentlab.hashing import counter_words, fmix32, seed_words, uniform  # noqa: F401 (re-exported)
from agentlab.kernels.pytree import pytree_dataclass, static_field

KINDS = ("action", "sticky", "event", "drift", "mask")
MASK_KINDS = ("crop", "torch", "blackout", "dropout")
#: The masks of image observations (the Atari-style games); ``dropout`` is for vector observations.
IMAGE_MASK_KINDS = ("crop", "torch", "blackout")
CROP_REGIONS = ("left", "right", "top", "bottom")
TORCH_CENTRES = ("agent", "random")
DRIFT_MODES = ("sudden", "cyclic")
PLAIN_NAMES = ("plain", "none", "")
#: At most this many profiles in one specification, drift targets included: every profile adds work to
#: each step and to its compile (breakout's step: 1.4 s for one profile, 5.7 s for 512 on a 2-core CPU),
#: and no STORI setting needs more than a handful.
MAX_PROFILES = 32
#: At most this many characters in a stochasticity string (far more than `MAX_PROFILES` profiles need).
MAX_SPEC_CHARS = 4096
#: Step counts (``drift`` ``at=``) are int32 inside the kernels.
MAX_STEPS = 2**31 - 1


@pytree_dataclass
class ActionNoise:
    """STORI type 1: with probability `p` the action is replaced by one drawn uniformly from the
    kernel's action set (it may equal the chosen one)."""

    p: float = 0.3
    kind: ClassVar[str] = "action"


@pytree_dataclass
class StickyActions:
    """MinAtar's sticky actions: with probability `p` the previously executed action is repeated."""

    p: float = 0.1
    kind: ClassVar[str] = "sticky"


@pytree_dataclass
class RandomEvent:
    """STORI type 2.1: the game-specific event `mode` is armed with probability `p` each step
    (each game documents its modes and what an armed event does)."""

    mode: str = static_field()
    p: float = 0.25
    kind: ClassVar[str] = "event"


@pytree_dataclass
class ObservationMask:
    """STORI type 3.2: with probability `p` each step, hide part of the observation.

    - ``kind="crop"``: hide the `region` half (``left``, ``right``, ``top``, ``bottom``);
    - ``kind="torch"``: keep only cells within Euclidean distance `radius` of the `centre`
      (``agent``: the game's agent cell; ``random``: a uniformly random cell each step);
    - ``kind="blackout"``: hide the channels of the named game object `region` (``all``: every channel);
    - ``kind="dropout"``: each feature of a vector observation is hidden (set to 0) independently with
      probability `p` (per agent per feature for multi-agent kernels); `p` is per feature, not per step.
    """

    kind_: str = static_field()
    region: str | None = static_field(default=None)
    centre: str | None = static_field(default=None)
    radius: float = 3.0
    p: float = 1.0
    kind: ClassVar[str] = "mask"


@pytree_dataclass
class ConceptDrift:
    """STORI type 2.2: switch between the plain game and the secondary concept `to`.

    ``mode="sudden"``: `to` is active from step `at` of the episode on; ``mode="cyclic"``: it is
    active in alternate blocks of `at` steps (inactive for steps ``0..at-1``, active for
    ``at..2at-1``, ...). Steps count from the episode's reset, so a reset returns to the plain game.
    """

    mode: str = static_field()
    to: tuple = ()
    at: int = 300
    kind: ClassVar[str] = "drift"


Profile = ActionNoise | StickyActions | RandomEvent | ObservationMask | ConceptDrift
Spec = tuple  # tuple[Profile, ...]


# ----------------------------------------------------------------------------------------------
# Parsing and formatting


def _split_top(text: str, sep: str, where: str) -> list[str]:
    """Split `text` at `sep` outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise UsageError(f"unbalanced ')' in stochasticity {where!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise UsageError(f"unbalanced '(' in stochasticity {where!r}")
    parts.append(text[start:])
    return parts


def _probability(value: str, key: str, where: str) -> float:
    try:
        p = float(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} in {where!r} is not a number (expected a probability in [0, 1])") from None
    if not math.isfinite(p):
        raise UsageError(f"{key}={value} in {where!r} is not a finite number (expected a probability in [0, 1])")
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"{key}={value} in {where!r} is outside [0, 1]")
    return p


def _positive_int(value: str, key: str, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} in {where!r} is not an integer (expected a step count >= 1)") from None
    if n < 1:
        raise UsageError(f"{key}={value} in {where!r} must be >= 1")
    if n > MAX_STEPS:
        raise UsageError(f"{key}={value} in {where!r} must be <= {MAX_STEPS} (steps are int32)")
    return n


def _radius(value: str, where: str) -> float:
    try:
        r = float(value)
    except ValueError:
        raise UsageError(f"radius={value!r} in {where!r} is not a number (expected a radius >= 0)") from None
    if not math.isfinite(r):
        raise UsageError(f"radius={value} in {where!r} is not a finite number (expected a radius >= 0)")
    if r < 0.0:
        raise UsageError(f"radius={value} in {where!r} must be >= 0")
    return r


def _choice(value: str, valid: Sequence[str], key: str, where: str) -> str:
    if value not in valid:
        raise UsageError(f"unknown {key} {value!r} in {where!r}: valid values are {choices(valid)}")
    return value


_KEYS = {
    "action": ("p",),
    "sticky": ("p",),
    "event": ("mode", "p"),
    "drift": ("mode", "at", "to"),
}
_MASK_KEYS = {
    "crop": ("kind", "region", "p"),
    "torch": ("kind", "radius", "centre", "p"),
    "blackout": ("kind", "region", "p"),
    "dropout": ("kind", "p"),
}


def _parse_profile(text: str, whole: str, inside_drift: bool = False) -> Profile:
    """One profile `text` of the specification `whole` (for messages); `inside_drift`: a drift's ``to=``."""
    kind, sep, rest = text.partition(":")
    kind = kind.strip()
    if kind in PLAIN_NAMES:
        if not kind:
            raise UsageError(f"empty profile in stochasticity {whole!r}: '+' must join two profiles")
        if sep:
            raise UsageError(f"{kind!r} takes no keys: give {kind!r} alone for the unmodified game, not {text!r}")
        raise UsageError(
            f"{kind!r} cannot be combined with other profiles in {whole!r}: give {kind!r} alone for the "
            "unmodified game, or leave it out"
        )
    if kind not in KINDS:
        word = re.match(r"[A-Za-z_]*", kind).group()
        if word in KINDS:
            raise UsageError(
                f"malformed stochasticity profile {text!r}: expected {word}:KEY=VALUE,... (a ':' after the kind)"
            )
        raise UsageError(f"unknown stochasticity kind {kind!r} in {text!r}: valid kinds are {choices(KINDS)}")
    if kind == "drift" and inside_drift:
        raise UsageError(f"a drift's to= cannot contain another drift, got {text!r} inside one")
    fields: dict[str, str] = {}
    if sep and not rest.strip():
        raise UsageError(f"malformed stochasticity profile {text!r}: nothing after ':' (expected KEY=VALUE)")
    if rest.strip():
        for item in _split_top(rest, ",", text):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not item.strip():
                raise UsageError(f"malformed stochasticity profile {text!r}: an empty KEY=VALUE (a stray ',')")
            if eq and key and not value:
                raise UsageError(f"malformed stochasticity profile {text!r}: {key}= has no value (expected KEY=VALUE)")
            if not eq or not key or not value:
                raise UsageError(f"malformed stochasticity profile {text!r}: {item!r} is not KEY=VALUE")
            if key in fields:
                raise UsageError(f"key {key!r} given twice in {text!r}")
            fields[key] = value
    if kind == "mask":
        mask_kind = _choice(fields.get("kind", ""), MASK_KINDS, "mask kind", text) if "kind" in fields else None
        if mask_kind is None:
            raise UsageError(f"mask profile {text!r} needs kind=: valid kinds are {choices(MASK_KINDS)}")
        valid_keys = _MASK_KEYS[mask_kind]
    else:
        valid_keys = _KEYS[kind]
    for key in fields:
        if key not in valid_keys:
            raise UsageError(f"unknown key {key!r} for {kind} in {text!r}: valid keys are {choices(valid_keys)}")

    p = fields.get("p")
    if kind == "action":
        return ActionNoise(p=_probability(p, "p", text)) if p else ActionNoise()
    if kind == "sticky":
        return StickyActions(p=_probability(p, "p", text)) if p else StickyActions()
    if kind == "event":
        if "mode" not in fields:
            raise UsageError(f"event profile {text!r} needs mode=NAME (`agentlab envs` lists each game's modes)")
        event = RandomEvent(mode=fields["mode"])
        return event.replace(p=_probability(p, "p", text)) if p else event
    if kind == "drift":
        mode = _choice(fields.get("mode", "sudden"), DRIFT_MODES, "drift mode", text)
        if "to" not in fields:
            raise UsageError(f"drift profile {text!r} needs to=(SPEC), e.g. to=(action:p=0.3)")
        to_text = fields["to"]
        if not (to_text.startswith("(") and _closing(to_text) == len(to_text) - 1):
            raise UsageError(f"drift to={to_text!r} in {text!r} must be one specification in parentheses")
        to = _parse(to_text[1:-1], inside_drift=True)
        if not to:
            raise UsageError(f"drift to= in {text!r} must name at least one profile ('plain' is none)")
        if any(isinstance(q, ConceptDrift) for q in to):
            raise UsageError(f"drift to= in {text!r} cannot contain another drift")
        at = _positive_int(fields["at"], "at", text) if "at" in fields else 300
        return ConceptDrift(mode=mode, to=to, at=at)
    # mask
    mask_kind = fields["kind"]
    if mask_kind == "crop":
        region = _choice(fields.get("region", "left"), CROP_REGIONS, "crop region", text)
        mask = ObservationMask(kind_="crop", region=region, p=0.75)
    elif mask_kind == "torch":
        centre = _choice(fields.get("centre", "agent"), TORCH_CENTRES, "torch centre", text)
        radius = _radius(fields["radius"], text) if "radius" in fields else 3.0
        mask = ObservationMask(kind_="torch", centre=centre, radius=radius)
    elif mask_kind == "dropout":
        mask = ObservationMask(kind_="dropout", p=0.1)
    else:
        mask = ObservationMask(kind_="blackout", region=fields.get("region", "all"))
    return mask.replace(p=_probability(p, "p", text)) if p else mask


def _closing(text: str) -> int:
    """The index of the ``)`` that closes the ``(`` at ``text[0]`` (-1 if none does)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return i
    return -1


def _parse(text: str, inside_drift: bool = False) -> Spec:
    text = text.strip()
    if text in PLAIN_NAMES:
        return ()
    return tuple(_parse_profile(part.strip(), text, inside_drift) for part in _split_top(text, "+", text))


def _check_count(spec: Spec, what: str) -> None:
    count = len(flat_profiles(spec))
    if count > MAX_PROFILES:
        raise UsageError(f"{what} has {count} profiles (drift targets included); at most {MAX_PROFILES}")


def parse_spec(text: str) -> Spec:
    """Parse a stochasticity string into a tuple of profiles (``"plain"`` or ``""`` is the empty tuple).

    Raises `UsageError` (a `ValueError`) naming the problem and the valid choices. Game-specific
    names (event modes, blackout regions) are checked by `validate_spec`. At most `MAX_PROFILES`
    profiles and `MAX_SPEC_CHARS` characters.
    """
    if not isinstance(text, str):
        raise UsageError(f"a stochasticity string must be a str, not {type(text).__name__}")
    if len(text) > MAX_SPEC_CHARS:
        raise UsageError(f"a stochasticity string of {len(text)} characters is too long; at most {MAX_SPEC_CHARS}")
    spec = _parse(text)
    shown = text.strip() if len(text.strip()) <= 60 else text.strip()[:57] + "..."
    _check_count(spec, f"the stochasticity {shown!r}")
    return spec


def _fmt_number(x: Any) -> str:
    value = float(x)
    return str(int(value)) if value.is_integer() else repr(value)


def format_profile(profile: Profile) -> str:
    if isinstance(profile, (ActionNoise, StickyActions)):
        return f"{profile.kind}:p={_fmt_number(profile.p)}"
    if isinstance(profile, RandomEvent):
        return f"event:mode={profile.mode},p={_fmt_number(profile.p)}"
    if isinstance(profile, ConceptDrift):
        return f"drift:mode={profile.mode},at={int(profile.at)},to=({format_spec(profile.to)})"
    if isinstance(profile, ObservationMask):
        if profile.kind_ == "torch":
            return (
                f"mask:kind=torch,radius={_fmt_number(profile.radius)},centre={profile.centre},"
                f"p={_fmt_number(profile.p)}"
            )
        if profile.kind_ == "dropout":
            return f"mask:kind=dropout,p={_fmt_number(profile.p)}"
        return f"mask:kind={profile.kind_},region={profile.region},p={_fmt_number(profile.p)}"
    raise UsageError(f"not a stochasticity profile: {profile!r}")


def format_spec(spec: Spec) -> str:
    """The canonical string of a specification (every key written); ``"plain"`` for none."""
    return "+".join(format_profile(p) for p in spec) or "plain"


def as_spec(value: str | Profile | Iterable[Profile] | None) -> Spec:
    """Accept a string, one profile, a sequence of profiles or None; return a tuple of profiles."""
    if value is None:
        return ()
    if isinstance(value, str):
        return parse_spec(value)
    if isinstance(value, (ActionNoise, StickyActions, RandomEvent, ObservationMask, ConceptDrift)):
        return (value,)
    try:
        spec = tuple(value)
    except TypeError:
        raise UsageError(f"stochasticity must be a string or profiles, not {type(value).__name__}") from None
    for profile in spec:
        format_profile(profile)  # raises on a non-profile
    return spec


def validate_spec(
    spec: Spec,
    event_modes: Iterable[str],
    blackout_regions: Iterable[str],
    where: str = "",
    mask_kinds: Sequence[str] = IMAGE_MASK_KINDS,
) -> Spec:
    """Check a specification's numbers and game-specific names; return it unchanged.

    `event_modes` and `blackout_regions` are the game's valid names (``all`` is always a region);
    `mask_kinds` the mask kinds the kernel implements (the image masks by default: ``dropout`` is
    refused there, it is for vector observations).
    """
    event_modes = tuple(event_modes)
    regions = ("all", *tuple(blackout_regions))
    label = f" for {where}" if where else ""
    _check_count(spec, f"the stochasticity{label}")

    def check_p(p: Any, text: str) -> None:
        _probability(str(float(p)), "p", text)

    for profile in spec:
        text = format_profile(profile)
        if isinstance(profile, ConceptDrift):
            if profile.mode not in DRIFT_MODES:
                raise UsageError(f"unknown drift mode {profile.mode!r}: valid modes are {choices(DRIFT_MODES)}")
            _positive_int(str(profile.at), "at", text)
            if not profile.to or any(isinstance(q, ConceptDrift) for q in profile.to):
                raise UsageError(f"drift in {text!r} needs a non-empty to= without another drift")
            validate_spec(profile.to, event_modes, regions[1:], where, mask_kinds)
            continue
        check_p(profile.p, text)
        if isinstance(profile, RandomEvent) and profile.mode not in event_modes:
            raise UsageError(f"unknown event mode {profile.mode!r}{label}: valid modes are {choices(event_modes)}")
        if isinstance(profile, ObservationMask):
            if profile.kind_ not in mask_kinds:
                if profile.kind_ in MASK_KINDS:
                    raise UsageError(
                        f"mask kind {profile.kind_!r} is not available{label}: valid kinds are {choices(mask_kinds)}"
                        + (" (dropout is for vector observations)" if profile.kind_ == "dropout" else "")
                    )
                raise UsageError(f"unknown mask kind {profile.kind_!r}: valid kinds are {choices(mask_kinds)}")
            if profile.kind_ == "crop" and profile.region not in CROP_REGIONS:
                raise UsageError(f"unknown crop region {profile.region!r}: valid regions are {choices(CROP_REGIONS)}")
            if profile.kind_ == "blackout" and profile.region not in regions:
                raise UsageError(
                    f"unknown blackout region {profile.region!r}{label}: valid regions are {choices(regions)}"
                )
            if profile.kind_ == "torch":
                if profile.centre not in TORCH_CENTRES:
                    raise UsageError(
                        f"unknown torch centre {profile.centre!r}: valid centres are {choices(TORCH_CENTRES)}"
                    )
                _radius(str(float(profile.radius)), text)
    return spec


# ----------------------------------------------------------------------------------------------
# Applying profiles inside a jitted step. Every draw comes from a vector of uint32 words derived
# from the step key; `WordStream` hands them out in a fixed (static) order.


#: Counter offsets of the independent streams of one step: the game's own draws, the action and event
#: profiles' draws, and the observation masks' draws (so adding a profile never changes the game's).
GAME_STREAM = 0
TAXONOMY_STREAM = 1 << 16
MASK_STREAM = 2 << 16


class WordStream:
    """Hands out one step's random words in a fixed (static) order, from a seed and a counter offset.

    Nothing is drawn for a stream that is never used (JAX removes the dead computation).
    """

    def __init__(self, seed: jax.Array, offset: int = GAME_STREAM, words: jax.Array | None = None):
        self.seed = seed
        self.offset = offset
        self.index = 0
        self.words = words

    @classmethod
    def prefetched(cls, seed: jax.Array, offset: int, n: int, key: jax.Array) -> WordStream:
        """A stream whose first `n` words are drawn at once and stored (`materialize`) before use,
        so that the compiler does not redo the hashing for every cell they end up affecting."""
        from agentlab.kernels.fusion import materialize

        words = materialize(counter_words(seed, offset + jnp.arange(n, dtype=jnp.uint32)), key) if n else None
        return cls(seed, offset, words)

    def take(self) -> jax.Array:
        if self.words is not None and self.index < self.words.shape[0]:
            word = self.words[self.index]
        else:
            word = counter_words(self.seed, self.offset + self.index)
        self.index += 1
        return word

    def take_many(self, n: int) -> jax.Array:
        """uint32 ``(n,)``: the next `n` words at once (the same words `n` calls of `take` give)."""
        words = counter_words(self.seed, self.offset + self.index + jnp.arange(n, dtype=jnp.uint32))
        self.index += n
        return words


def randint(word: jax.Array, n: int | jax.Array) -> jax.Array:
    """An int32 uniform in ``[0, n)`` for ``1 <= n < 256`` (n may be traced), from one uint32 word."""
    return (((word >> 8) * jnp.asarray(n, jnp.uint32)) >> 24).astype(jnp.int32)


def randbelow(word: jax.Array, n: int | jax.Array) -> jax.Array:
    """An int32 uniform in ``[0, n)`` for ``1 <= n <= 2**15`` (n may be traced): ``floor(word * n / 2**32)``
    computed exactly in uint32 halves (Lemire's multiply-high without rejection, bias below ``n / 2**32``)."""
    n = jnp.asarray(n, jnp.uint32)
    high = (word >> 16) * n
    low = ((word & jnp.uint32(0xFFFF)) * n) >> 16
    return ((high + low) >> 16).astype(jnp.int32)


def bernoulli(word: jax.Array, p: jax.Array | float) -> jax.Array:
    """True with probability `p` (exactly never for p=0, always for p=1)."""
    return uniform(word) < p


def drift_active(drift: ConceptDrift, time: jax.Array) -> jax.Array:
    """Whether the drift's secondary concept is active at step `time` of the episode."""
    at = jnp.maximum(jnp.asarray(drift.at, jnp.int32), 1)
    if drift.mode == "sudden":
        return time >= at
    return (time // at) % 2 == 1


def active_profiles(spec: Spec, time: jax.Array) -> list[tuple[Profile, jax.Array | bool]]:
    """Flatten a specification into ``(profile, active)`` pairs in application order."""
    out: list[tuple[Profile, jax.Array | bool]] = []
    for profile in spec:
        if isinstance(profile, ConceptDrift):
            on = drift_active(profile, time)
            out.extend((inner, on) for inner, _ in active_profiles(profile.to, time))
        else:
            out.append((profile, True))
    return out


def draws_needed(profiles: list, kinds: tuple[type, ...]) -> int:
    """How many words the `profiles` of the given classes take in one step."""
    per = {StickyActions: 1, ActionNoise: 2, RandomEvent: 1}
    total = 0
    for profile, _ in profiles:
        if not isinstance(profile, kinds):
            continue
        if isinstance(profile, ObservationMask):
            total += 1 + (2 if profile.kind_ == "torch" and profile.centre == "random" else 0)
        else:
            total += per[type(profile)]
    return total


def flat_profiles(spec: Spec) -> list[Profile]:
    """Every non-drift profile of a specification, drift targets included, in application order."""
    out: list[Profile] = []
    for profile in spec:
        out.extend(flat_profiles(profile.to) if isinstance(profile, ConceptDrift) else [profile])
    return out
