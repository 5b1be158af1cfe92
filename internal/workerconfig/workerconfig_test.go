package workerconfig

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// env is a fake environment for ${NAME}.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

const secret = "SG.very-secret-key-123"

const goodConfig = `
[queue]
schema = "jobs"

[worker]
poll_interval = "250ms"
lease = "10s"
shutdown_timeout = "5s"
retention = "0s"
batch_size = 10
listen = false

[streams.crm]
concurrency = 3
exclusive = true

[tasks."customer.push"]
stream = "crm"
timeout = "2m"
max_attempts = 5
retry = { base = "2s", max = "1m", jitter = 0.1 }
[tasks."customer.push".exec]
program = "/bin/echo"
args = ["--id={{customer_id}}", "cost $$5"]
env = { CRM_TOKEN = "${CRM_TOKEN}" }
pass_env = ["HOME"]
permanent_exit_codes = [2]
[tasks."customer.push".hooks]
start = "http://127.0.0.1:1/start"
secret = "${HOOK_SECRET}"

[tasks."crm.notify".webhook]
url = "http://127.0.0.1:1/hook"
timeout = "3s"

[tasks."visits.count".sql]
statement = """
UPDATE visits SET n = n + 1
WHERE id = :id"""
isolation = "serializable"

[tasks."email.send"]
retry = { constant = "30s" }
[tasks."email.send".email]
api_key = "${SENDGRID_API_KEY}"

[[schedules]]
name = "cleanup"
stream = "maintenance"
every = "10m"
sql = { statement = "DELETE FROM sessions WHERE expires < now()" }

[[schedules]]
name = "report"
stream = "maintenance"
cron = "0 3 * * *"
[schedules.exec]
program = "/bin/true"
`

var goodEnv = map[string]string{"CRM_TOKEN": "crm-token-456", "HOOK_SECRET": "hook-secret-789", "SENDGRID_API_KEY": secret}

func TestParseGoodConfig(t *testing.T) {
	c, err := Parse("esync.toml", []byte(goodConfig), env(goodEnv))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.Schema != "jobs" || c.Worker.Lease.D() != 10*time.Second || *c.Worker.BatchSize != 10 || *c.Worker.Listen {
		t.Errorf("worker settings: %+v %+v", c.Queue, c.Worker)
	}
	push := c.Tasks["customer.push"]
	if push.Exec.Env["CRM_TOKEN"] != "crm-token-456" || push.Exec.Args[1] != "cost $5" {
		t.Errorf("expansion: env %v args %v", push.Exec.Env, push.Exec.Args)
	}
	if c.Tasks["email.send"].Email.APIKey != secret {
		t.Error("api key not expanded")
	}
	if got := c.Tasks["visits.count"].SQL.Statement; !strings.Contains(got, "WHERE id = :id") {
		t.Errorf("statement %q", got)
	}
	if len(c.Schedules) != 2 || c.Schedules[1].Cron != "0 3 * * *" {
		t.Errorf("schedules %+v", c.Schedules)
	}
	if got := c.Redact("key " + secret + " token crm-token-456"); strings.Contains(got, secret) || strings.Contains(got, "crm-token") {
		t.Errorf("Redact left a secret: %s", got)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if n := len(c.ManagerOptions()); n != 6 {
		t.Errorf("%d manager options, want 6", n)
	}
	if got := c.TaskNames(); strings.Join(got, ",") != "crm.notify,customer.push,email.send,visits.count" {
		t.Errorf("task names %v", got)
	}
}

// Register without the queue's database refuses a sql task that names no
// database of its own, and says which.
func TestRegisterNeedsTheQueueDatabase(t *testing.T) {
	c, err := Parse("esync.toml", []byte(goodConfig), env(goodEnv))
	if err != nil {
		t.Fatal(err)
	}
	sm := queue.NewSyncManager(nil)
	closeDBs, err := c.Register(sm, Options{NoRetry: true})
	if err == nil {
		closeDBs()
		t.Fatal("Register without a database accepted a sql task")
	}
	if !strings.Contains(err.Error(), `tasks."visits.count".sql`) || !strings.Contains(err.Error(), "no database") {
		t.Errorf("error %v", err)
	}
}

// Every kind of mistake is an error with the file, the line and the
// field, and a config with several mistakes reports each.
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // substrings of the error
	}{
		{"syntax", "[worker\nlease = \"1s\"\n", []string{"bad.toml:2:", "table name"}},
		{"unknown key", "[tasks.a.exec]\nprogram = \"/bin/true\"\nprogam = \"x\"\n", []string{"bad.toml:3: tasks.a.exec.progam: unknown field"}},
		{"unknown table", "[tasks.a.exec]\nprogram = \"/bin/true\"\n[workers]\nlease = \"1s\"\n", []string{"bad.toml:3: workers: unknown field"}},
		{"unknown inline key", "[tasks.a]\nretry = { base = \"1s\", bse = \"2s\" }\n[tasks.a.exec]\nprogram = \"/bin/true\"\n", []string{"bad.toml:2: tasks.a.retry.bse: unknown field"}},
		{"unknown key in 2nd schedule", "[[schedules]]\nname = \"a\"\nstream = \"s\"\nevery = \"1m\"\nsql = { statement = \"SELECT 1\" }\n[[schedules]]\nname = \"b\"\nevry = \"1m\"\n", []string{"bad.toml:8: schedules.evry: unknown field"}},
		{"wrong type", "[worker]\nbatch_size = \"ten\"\n[tasks.a.exec]\nprogram = \"/bin/true\"\n", []string{"bad.toml:2: worker.batch_size: incompatible types"}},
		{"bad duration", "[tasks.a]\ntimeout = \"5 minutes\"\n[tasks.a.exec]\nprogram = \"/bin/true\"\n", []string{"bad.toml:2: tasks.a.timeout: not a duration"}},
		{"negative", "[worker]\nlease = \"-1s\"\nbatch_size = 0\n[tasks.a.exec]\nprogram = \"/bin/true\"\n", []string{"bad.toml:2: worker.lease: must be positive", "bad.toml:3: worker.batch_size: must be at least 1"}},
		{"no action", "[tasks.a]\nstream = \"s\"\n", []string{"bad.toml:1: tasks.a: no action"}},
		{"two actions", "[tasks.a.exec]\nprogram = \"/bin/true\"\n[tasks.a.webhook]\nurl = \"http://127.0.0.1/\"\n", []string{"tasks.a: more than one action (exec, webhook)"}},
		{"nothing to do", "[worker]\nlease = \"1s\"\n", []string{"nothing to do"}},
		{"unset variable", "[tasks.a.email]\napi_key = \"${NOT_SET_ANYWHERE}\"\n", []string{"bad.toml:2: tasks.a.email.api_key: environment variable NOT_SET_ANYWHERE is not set"}},
		{"unclosed variable", "[tasks.a.email]\napi_key = \"${KEY\"\n", []string{"bad.toml:2: tasks.a.email.api_key: unclosed ${"}},
		{"retry", "[tasks.a]\nretry = { constant = \"1s\", base = \"1s\" }\n[tasks.a.exec]\nprogram = \"/bin/true\"\n", []string{"bad.toml:2: tasks.a.retry: constant cannot be combined"}},
		{"jitter", "[tasks.a]\nretry = { base = \"1s\", jitter = 2.0 }\n[tasks.a.exec]\nprogram = \"/bin/true\"\n", []string{"tasks.a.retry.jitter: must be within 0..1"}},
		{"schedule", "[[schedules]]\nstream = \"s\"\n[[schedules]]\nname = \"x\"\nstream = \"s\"\nevery = \"1m\"\ncron = \"* * * * *\"\n[schedules.exec]\nprogram = \"/bin/echo\"\nargs = [\"{{id}}\"]\n",
			[]string{"bad.toml:1: schedules[1].name: missing", "schedules[1]: give every", "schedules[1]: no action", "bad.toml:3: schedules[2] (x): give every or cron, not both", "bad.toml:10: schedules[2] (x).exec.args: argument 1 names a task field"}},
		{"duplicate schedule", "[[schedules]]\nname = \"x\"\nstream = \"s\"\nevery = \"1m\"\nsql = { statement = \"SELECT 1\" }\n[[schedules]]\nname = \"x\"\nstream = \"s\"\nevery = \"1m\"\nsql = { statement = \"SELECT 1\" }\n",
			[]string{"bad.toml:7: schedules[2] (x).name: schedule 1 has this name too"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.src), env(map[string]string{}))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// Problems the actions find when they are built are reported with the
// task's field and line too; the manager's own checks (a bad cron spec)
// as well.
func TestCheckFindsActionErrors(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"exec", "[tasks.a.exec]\nprogram = \"/bin/true\"\nargs = [\"{{unclosed\"]\n", "bad.toml:1: tasks.a.exec: execaction: argument 1"},
		{"webhook", "\n[tasks.a.webhook]\nurl = \"ftp://x\"\n", "bad.toml:2: tasks.a.webhook: "},
		{"hooks", "[tasks.a.exec]\nprogram = \"/bin/true\"\n[tasks.a.hooks]\nstrict_success = true\n", "bad.toml:3: tasks.a.hooks: webhook: lifecycle: no webhook URL given"},
		{"sql", "[tasks.a.sql]\nstatement = \"SELECT $1\"\n", "bad.toml:1: tasks.a.sql: "},
		{"isolation", "[tasks.a.sql]\nstatement = \"SELECT 1\"\nisolation = \"chaos\"\n", "tasks.a.sql: isolation \"chaos\""},
		{"email", "[tasks.a.email]\napi_key = \"k\"\nhost = \"not a host\"\n", "bad.toml:1: tasks.a.email: "},
		{"cron", "[[schedules]]\nname = \"x\"\nstream = \"s\"\ncron = \"61 * * * *\"\nsql = { statement = \"SELECT 1\" }\n", "bad.toml:1: schedules[1] (x): queue: schedule"},
		{"scheduled sql with a parameter", "[[schedules]]\nname = \"x\"\nstream = \"s\"\nevery = \"1m\"\nsql = { statement = \"DELETE FROM t WHERE id = :id\" }\n", "bad.toml:5: schedules[1] (x).sql: "},
		{"stream", "[streams.s]\nconcurrency = -1\n[tasks.a.exec]\nprogram = \"/bin/true\"\n", "bad.toml:2: streams.s.concurrency: must be at least 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("bad.toml", []byte(tc.src), env(nil))
			if err == nil {
				err = c.Check()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("%T is not an *Error", err)
			}
		})
	}
}

// A secret from the environment never appears in an error, even when an
// action quotes the value it refuses.
func TestSecretsNeverInErrors(t *testing.T) {
	const hostSecret = "host-secret-4f2a"
	vars := map[string]string{"SENDGRID_API_KEY": secret, "HOST": "https://" + hostSecret + ".example.com/path", "HOOK": "ftp://" + secret}
	for _, src := range []string{
		"[tasks.a.email]\napi_key = \"${SENDGRID_API_KEY}\"\nhost = \"${HOST}\"\n",
		"[tasks.a.email]\napi_key = \"k\"\nhost = \"${HOST}\"\n",
		"[tasks.a.webhook]\nurl = \"${HOOK}\"\nsecret = \"${SENDGRID_API_KEY}\"\n",
		"[tasks.a.exec]\nprogram = \"/bin/true\"\nenv = { \"BAD NAME\" = \"${SENDGRID_API_KEY}\" }\n",
		"[tasks.a.sql]\nstatement = \"SELECT '${SENDGRID_API_KEY}\"\n",
		"[[schedules]]\nname = \"${SENDGRID_API_KEY}\"\nstream = \"s\"\n",
	} {
		c, err := Parse("s.toml", []byte(src), env(vars))
		if err == nil {
			err = c.Check()
		}
		if err == nil {
			t.Errorf("accepted:\n%s", src)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), hostSecret) {
			t.Errorf("secret in error: %v", err)
		}
	}
}

func TestExpand(t *testing.T) {
	lookup := env(map[string]string{"A": "x", "EMPTY": ""})
	for in, want := range map[string]string{
		"plain": "plain", "${A}": "x", "a${A}b${A}": "axbx", "$$": "$", "$${A}": "${A}", "cost $5": "cost $5", "${EMPTY}": "", "$": "$",
	} {
		got, _, err := expand(in, lookup)
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${}", "${1A}", "${A", "${MISSING}"} {
		if _, _, err := expand(in, lookup); err == nil {
			t.Errorf("expand(%q) accepted", in)
		}
	}
}

// The reference configuration in the package documentation is valid.
func TestDocumentedConfig(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start, end := strings.Index(text, "//\t[queue]"), strings.Index(text, "// # Secrets")
	if start < 0 || end < start {
		t.Fatal("no configuration in doc.go")
	}
	var src strings.Builder
	for _, line := range strings.Split(text[start:end], "\n") {
		src.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "//"), "\t") + "\n")
	}
	vars := map[string]string{"DATABASE_URL": "postgres://localhost/app", "CRM_TOKEN": "c", "HOOK_SECRET": "h",
		"WEBHOOK_SECRET": "w", "REPORTS_URL": "postgres://localhost/reports", "SENDGRID_API_KEY": "s"}
	c, err := Parse("doc.go", []byte(src.String()), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if len(c.Tasks) != 4 || len(c.Schedules) != 1 {
		t.Errorf("%d tasks and %d schedules, want 4 and 1", len(c.Tasks), len(c.Schedules))
	}
}
