"""Config keys that do nothing are refused, naming the nearest real key; no message suggests a fix
that is itself wrong.

A closed schema (every node but the open ``env`` and ``sampler``, whose extra keys reach their
constructor, which refuses what it does not take) holds only the keys it declares:
``macpo.config.checks.check_config`` refuses ``+t_maxx=5`` before torch is imported, and
``validate`` refuses a ``trainer.*`` key the Trainer does not take. Every suggestion a message
makes is applied here and must compose and validate.
"""

from __future__ import annotations

import re

import pytest

from macpo.config import ConfigError, compose
from macpo.runs.validation import validate
from tests.helpers import TINY, refused_in_one_line


@pytest.mark.parametrize(
    "override, message",
    [
        ("+t_maxx=5", "t_maxx: no such key (did you mean t_max?)"),
        ("++t_maxx=5", "t_maxx: no such key (did you mean t_max?)"),
        ("t_maxx=5", "t_maxx: no such key (did you mean t_max?)"),
        ("+seeds=1", "seeds: no such key (did you mean seed?)"),
        ("+logger.experimentt=x", "logger.experimentt: no such key (did you mean logger.experiment?)"),
        ("+checkpoint.dirr=x", "checkpoint.dirr: no such key (did you mean checkpoint.dir?)"),
        ("+nn.kernel=torch", "nn.kernel: no such key (did you mean nn.kernels?)"),
        ("+algo.lrr=0.1", "algo.lrr: no such key (did you mean algo.lr?)"),
        ("algo.lrr=0.1", "algo.lrr: no such key (did you mean algo.lr?)"),
        ("sampler.temprature=1", "sampler.temprature: no such key (did you mean sampler.temperature?)"),
        ("+algo.hidden=3", "algo.hidden: no such key"),
        ("+foo.bar=1", "foo: no such key"),
    ],
)
def test_an_added_key_nothing_reads_is_refused_naming_the_nearest_real_key(override, message):
    with pytest.raises(ConfigError) as error:
        compose([*TINY, override])
    assert str(error.value) == message


@pytest.mark.parametrize(
    "override, message",
    [
        ("+trainer.max_epoch=3", "trainer.max_epoch: no such key (did you mean trainer.max_epochs?)"),
        ("+trainer.foo=1", "trainer.foo: no such key"),
        ("+env.foo=1", "unexpected keyword argument 'foo'"),
        ("+sampler.temprature=1", "unexpected keyword argument 'temprature'"),
    ],
)
def test_a_key_the_constructor_would_not_take_is_refused_at_validation(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose([*TINY, "device=cpu", override]))


@pytest.mark.parametrize(
    "override",
    ["t_maxx=5", "+t_maxx=5", "algo.lrr=0.1", "+logger.experimentt=other", "env.gird_size=4", "+trainer.max_epoch=3",
     "sampler.temprature=2", "+algo.hidden=3", "env.foo=1"],
)  # fmt: skip
def test_every_suggested_fix_is_itself_right(override):
    """No message proposes ``+key=``; a "did you mean" names a real key: applying it composes and validates."""
    with pytest.raises(ConfigError) as error:
        validate(compose([*TINY, "device=cpu", override]))
    message = str(error.value)
    assert "+" not in message, message
    suggestion = re.search(r"did you mean ([\w.]+)\?", message)
    if suggestion:
        value = override.split("=", 1)[1]
        validate(compose([*TINY, "device=cpu", f"{suggestion.group(1)}={value}"]))


@pytest.mark.parametrize("override", ["+t_maxx=5", "+logger.experimentt=x", "+trainer.max_epoch=3"])
def test_the_cli_refuses_an_unread_key_in_one_line_and_creates_nothing(tmp_path, override):
    line = refused_in_one_line(tmp_path, [*TINY, "device=cpu", override])
    assert line.startswith(f"error: {override.lstrip('+').split('=')[0]}: no such key (did you mean "), line
