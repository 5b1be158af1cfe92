// Package workerconfig reads the configuration file of `esync worker` and
// turns it into task handlers, streams and schedules of a SyncManager, so
// that a queue can be worked without writing Go.
//
// The file is TOML. Every duration is a string such as "30s" or "2m";
// unknown keys are errors, reported with their line, as are values of the
// wrong type.
//
//	[queue]                       # optional; flags and DATABASE_URL otherwise
//	dsn    = "${DATABASE_URL}"
//	schema = "public"
//	table  = "message_queue"
//
//	[worker]                      # all optional, defaults of the SyncManager
//	poll_interval        = "1s"
//	lease                = "30s"
//	shutdown_timeout     = "30s"
//	retention            = "24h"  # "0s" keeps finished tasks forever
//	maintenance_interval = "5s"
//	batch_size           = 100
//	cancel_unhandled     = true
//	listen               = true
//	metrics              = "127.0.0.1:9464"
//
//	[streams.crm]
//	concurrency = 4
//	exclusive   = true            # one process of the cluster at a time
//
//	[tasks."customer.push"]       # a task name and what runs it
//	stream       = "crm"          # default: the task name
//	timeout      = "2m"
//	max_attempts = 5
//	retry        = { base = "1s", max = "1h", jitter = 0.2 }  # or { constant = "10s" }
//	[tasks."customer.push".exec]  # exactly one of exec, webhook, sql, email
//	program  = "/usr/local/bin/push-customer"
//	args     = ["--id={{customer_id}}", "--", "{{name}}"]
//	env      = { CRM_TOKEN = "${CRM_TOKEN}", REGION = "{{region}}" }
//	pass_env = ["HOME"]
//	permanent_exit_codes = [2]
//	[tasks."customer.push".hooks] # lifecycle webhooks around the action
//	start   = "https://hooks.example.com/start"
//	success = "https://hooks.example.com/success"
//	fail    = "https://hooks.example.com/fail"
//	secret  = "${HOOK_SECRET}"
//
//	[tasks."crm.notify".webhook]
//	url    = "https://crm.example.com/esync"
//	secret = "${WEBHOOK_SECRET}"
//
//	[tasks."visits.count".sql]
//	statement = "UPDATE customers SET visits = visits + 1 WHERE id = :customer_id"
//	database  = "${REPORTS_URL}"  # default: the queue's database
//
//	[tasks."email.send".email]
//	api_key = "${SENDGRID_API_KEY}"
//
//	[[schedules]]                 # sql or exec actions on a schedule
//	name   = "sessions.cleanup"
//	stream = "maintenance"
//	every  = "10m"                # or cron = "0 3 * * *"
//	sql    = { statement = "DELETE FROM sessions WHERE expires < now()" }
//
// # Secrets
//
// ${NAME} in any string value is replaced by the environment variable NAME
// ($$ is a literal $); a variable that is not set is an error. Secrets
// belong in the environment, never in the file. The values that came from
// the environment are never shown: Config.Redact removes them from any text
// (errors, logs), and this package's own errors never contain them.
package workerconfig
