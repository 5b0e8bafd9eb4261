"""EnvReader and load_environment: typed settings whose every error names the variable."""

from __future__ import annotations

import pytest

from runtime.contract.settings import EnvReader, SettingError, load_environment


def reader(**environ: str) -> EnvReader:
    return EnvReader(environ)


# --- required and optional text -------------------------------------------------------

@pytest.mark.parametrize("environ", [{}, {"S3_BUCKET": ""}, {"S3_BUCKET": "   "}])
def test_missing_required_text_names_the_variable(environ):
    with pytest.raises(SettingError, match="S3_BUCKET is required"):
        EnvReader(environ).text("S3_BUCKET")


def test_text_is_stripped():
    assert reader(S3_BUCKET="  my-bucket \n").text("S3_BUCKET") == "my-bucket"


def test_text_default_is_used_when_unset_or_blank():
    assert reader().text("S3_PREFIX", "projects/") == "projects/"
    assert reader(S3_PREFIX=" ").text("S3_PREFIX", "projects/") == "projects/"
    assert reader(S3_PREFIX="p/").text("S3_PREFIX", "projects/") == "p/"


def test_optional_text():
    assert reader().optional_text("WORKER_ID") is None
    assert reader(WORKER_ID="  ").optional_text("WORKER_ID") is None
    assert reader(WORKER_ID=" w1 ").optional_text("WORKER_ID") == "w1"


# --- integers and numbers -------------------------------------------------------------

@pytest.mark.parametrize("method", ["integer", "number"])
def test_missing_required_number_names_the_variable(method):
    with pytest.raises(SettingError, match="ECS_MAX_TASKS is required"):
        getattr(reader(), method)("ECS_MAX_TASKS")


def test_integer_parses_and_uses_default():
    assert reader(N=" 42 ").integer("N") == 42
    assert reader(N="-3").integer("N") == -3
    assert reader().integer("N", 7) == 7


@pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "ten", "0x10", "4 2"])
def test_malformed_integer_names_the_variable(raw):
    with pytest.raises(SettingError) as caught:
        reader(WORKER_CONCURRENCY=raw).integer("WORKER_CONCURRENCY", 1)
    assert "WORKER_CONCURRENCY must be a whole number" in str(caught.value)
    assert repr(raw) in str(caught.value)


def test_number_parses_and_uses_default():
    assert reader(X="2.5").number("X") == 2.5
    assert reader(X="1e2").number("X") == 100.0
    assert reader(X="3").number("X") == 3.0
    assert reader().number("X", 0.25) == 0.25


@pytest.mark.parametrize("raw", ["abc", "1,5", "--1", "five seconds"])
def test_malformed_number_names_the_variable(raw):
    with pytest.raises(SettingError, match="IDLE_TIMEOUT_SECONDS must be a number"):
        reader(IDLE_TIMEOUT_SECONDS=raw).number("IDLE_TIMEOUT_SECONDS", 60)


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_non_finite_number_names_the_variable(raw):
    with pytest.raises(SettingError, match="IDLE_TIMEOUT_SECONDS must be a finite number"):
        reader(IDLE_TIMEOUT_SECONDS=raw).number("IDLE_TIMEOUT_SECONDS", 60)


@pytest.mark.parametrize("method", ["integer", "number"])
@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("0", "N must be at least 1, got 0"),
        ("11", "N must be at most 10, got 11"),
        ("-4", "N must be at least 1"),
    ],
)
def test_out_of_range_names_the_variable_and_the_bound(method, raw, error):
    with pytest.raises(SettingError, match=error):
        getattr(reader(N=raw), method)("N", minimum=1, maximum=10)


@pytest.mark.parametrize("method", ["integer", "number"])
@pytest.mark.parametrize("raw", ["1", "10", "5"])
def test_range_bounds_are_inclusive(method, raw):
    assert getattr(reader(N=raw), method)("N", minimum=1, maximum=10) == int(raw)


def test_fractional_number_bounds():
    with pytest.raises(SettingError, match=r"KILL_GRACE_SECONDS must be at least 0\.1"):
        reader(KILL_GRACE_SECONDS="0.05").number("KILL_GRACE_SECONDS", minimum=0.1)
    assert reader(KILL_GRACE_SECONDS="0.1").number("KILL_GRACE_SECONDS", minimum=0.1) == 0.1


# --- booleans -------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", " On "])
def test_boolean_true_spellings(raw):
    assert reader(FLAG=raw).boolean("FLAG", False) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off"])
def test_boolean_false_spellings(raw):
    assert reader(FLAG=raw).boolean("FLAG", True) is False


@pytest.mark.parametrize("default", [True, False])
def test_boolean_default_when_unset(default):
    assert reader().boolean("FLAG", default) is default
    assert reader(FLAG="").boolean("FLAG", default) is default


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled"])
def test_malformed_boolean_names_the_variable(raw):
    with pytest.raises(SettingError, match="FLAG must be true or false"):
        reader(FLAG=raw).boolean("FLAG", False)


# --- URLs -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "url",
    ["https://sqs.eu-west-1.amazonaws.com/123456789012/q", "http://localhost:5000/q"],
)
def test_url_with_an_allowed_scheme_is_accepted(url):
    assert reader(SQS_QUEUE_URL=url).url("SQS_QUEUE_URL", ("http", "https")) == url


@pytest.mark.parametrize(
    "raw",
    [
        "sqs.eu-west-1.amazonaws.com/123/q",  # no scheme
        "ftp://example.com/q",  # scheme not allowed
        "https://",  # nothing after the scheme
        "https:/example.com",  # malformed separator
        "q",
    ],
)
def test_malformed_url_names_the_variable(raw):
    with pytest.raises(SettingError) as caught:
        reader(SQS_QUEUE_URL=raw).url("SQS_QUEUE_URL", ("http", "https"))
    message = str(caught.value)
    assert message.startswith("SQS_QUEUE_URL must be a URL starting with http:// or https://")
    assert repr(raw) in message


def test_missing_url_is_required_unless_defaulted():
    with pytest.raises(SettingError, match="SQS_QUEUE_URL is required"):
        reader().url("SQS_QUEUE_URL", ("https",))
    assert reader().url("REDIS_URL", ("redis",), "redis://h:1/0") == "redis://h:1/0"


# --- lists ----------------------------------------------------------------------------

def test_text_list_splits_and_drops_blanks():
    assert reader(SUBNETS=" a, b,,c ,").text_list("SUBNETS") == ("a", "b", "c")
    assert reader().text_list("SUBNETS", ("x",)) == ("x",)
    assert reader(SUBNETS=" ").text_list("SUBNETS") == ()


# --- .env files -----------------------------------------------------------------------

def test_dotenv_values_fill_in_what_the_environment_lacks(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("S3_BUCKET=from-file\nS3_PREFIX=files/\n")
    monkeypatch.chdir(tmp_path)

    merged = load_environment({"SQS_QUEUE_URL": "http://q"})

    assert merged == {
        "S3_BUCKET": "from-file", "S3_PREFIX": "files/", "SQS_QUEUE_URL": "http://q",
    }


def test_real_environment_wins_over_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("S3_BUCKET=from-file\nWORKER_CONCURRENCY=2\n")
    monkeypatch.chdir(tmp_path)

    merged = load_environment({"S3_BUCKET": "from-env"})

    assert merged["S3_BUCKET"] == "from-env"
    assert merged["WORKER_CONCURRENCY"] == "2"


def test_process_environment_is_the_default_source(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("CLOUDIDE_TEST_A=file\nCLOUDIDE_TEST_B=file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOUDIDE_TEST_A", "process")

    merged = load_environment()

    assert merged["CLOUDIDE_TEST_A"] == "process"
    assert merged["CLOUDIDE_TEST_B"] == "file"


def test_no_dotenv_file_means_just_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_environment({"A": "1"}) == {"A": "1"}


def test_dotenv_keys_without_a_value_are_skipped(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("JUST_A_KEY\nWITH_VALUE=v\n")
    monkeypatch.chdir(tmp_path)

    merged = load_environment({})

    assert "JUST_A_KEY" not in merged
    assert merged["WITH_VALUE"] == "v"


def test_explicit_dotenv_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("WHICH=default\n")
    (tmp_path / "other.env").write_text("WHICH=other\n")

    assert load_environment({}, dotenv_path=str(tmp_path / "other.env")) == {"WHICH": "other"}


def test_dotenv_values_feed_the_reader(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("WORKER_CONCURRENCY=zero\n")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SettingError, match="WORKER_CONCURRENCY"):
        EnvReader(load_environment({})).integer("WORKER_CONCURRENCY", 1)
