"""The public API: every name re-exported by ``osnmf`` resolves to an object of that name."""

import osnmf


def test_every_public_name_resolves():
    for name in osnmf._LAZY:
        obj = getattr(osnmf, name)
        assert getattr(obj, "__name__", name) == name, name
    assert set(osnmf._LAZY) <= set(dir(osnmf))
