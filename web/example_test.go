package web_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
	"github.com/esync/queue/web"
)

// Mount the dashboard under a prefix of your own server. Here queuetest
// provides a throwaway PostgreSQL and httptest the server; in production,
// pass your own connection string and call http.ListenAndServe.
func ExampleHandler() {
	ctx := context.Background()
	pg, err := queuetest.Shared()
	if err != nil {
		log.Fatal(err)
	}
	name, dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer pg.DropDatabase(ctx, name)
	driver, err := queue.OpenPostgres(dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer driver.Close()
	if err := driver.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := queue.NewTaskManager(driver).Add(ctx, "crm.update", "customer:123", nil); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/esync/", web.Handler(driver, web.WithReadOnly()))
	server := httptest.NewServer(mux)
	defer server.Close()

	resp, err := http.Get(server.URL + "/esync/tasks?key=customer:123")
	if err != nil {
		log.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, strings.Contains(string(page), `<a href="/esync/tasks/1">1</a>`))
	// Output: 200 OK true
}

// Serve the dashboard alone until interrupted, as `esync ui` does.
func ExampleServe() {
	driver, err := queue.OpenPostgres(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer driver.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := web.Serve(ctx, driver, "127.0.0.1:8080", web.WithBasicAuth("ops", os.Getenv("ESYNC_UI_PASSWORD"))); err != nil {
		log.Fatal(err)
	}
}
