"""A stand-in for torchaudio, installed by .ci/prepare_comfyui.sh into a test venv only (never
shipped): ComfyUI 0.30+ imports torchaudio at start-up, and no torchaudio build loads beside the
CPU torch the tests use. Importing works; any use raises, so nothing can pass by silently
computing audio. The pack itself never imports torchaudio (tests/test_pack.py checks that)."""

STAND_IN = True


class StandInError(ImportError):
    """Raised on any use. An ImportError, so ComfyUI's own ``try: from torchaudio... except``
    guards see what they would see without torchaudio."""


def unavailable(module: str, name: str):
    raise StandInError(f"{module}.{name}: torchaudio is a test stand-in here (.ci/standins); audio is not available")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    unavailable(__name__, name)
