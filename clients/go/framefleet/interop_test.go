package framefleet_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/framefleet/framefleet/clients/go/framefleet"
	pb "github.com/framefleet/framefleet/clients/go/framefleetv1"
	"github.com/framefleet/framefleet/clients/go/internal/farmtest"
)

// A tiny template: the background follows the seek time, the text a parameter.
const cardHTML = `<!doctype html>
<html><body style="margin:0">
<div id="card" style="width:64px;height:64px;font:10px sans-serif;color:#fff"></div>
<script>
  framefleet.onParams(p => { document.getElementById("card").textContent = p.name; });
  framefleet.onSeek(t => {
    document.getElementById("card").style.background = "hsl(" + Math.round(t * 720) + ",70%,40%)";
  });
</script>
</body></html>`

// Everything against one live coordinator and agent, started as separate processes.
func TestInterop(t *testing.T) {
	farm := farmtest.Start(t)
	tls, err := framefleet.WithTLS(farm.CA)
	if err != nil {
		t.Fatal(err)
	}
	client, err := framefleet.Dial(farm.Address, tls, framefleet.WithToken(farm.Token))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	anonymous, err := framefleet.Dial(farm.Address, tls)
	if err != nil {
		t.Fatal(err)
	}
	defer anonymous.Close()

	t.Run("NoTokenIsUnauthenticated", func(t *testing.T) {
		_, err := anonymous.Get(context.Background(), "x")
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("a call without a token: %v, want Unauthenticated", err)
		}
	})
	t.Run("RetryReturnsTheFirstJob", func(t *testing.T) { retryReturnsTheFirstJob(t, client) })

	t.Run("SubmitWatchSucceeds", func(t *testing.T) { submitWatchSucceeds(t, client) })
	t.Run("RefusedWithErrorClass", func(t *testing.T) { refusedWithErrorClass(t, client) })
	t.Run("Cancel", func(t *testing.T) { cancel(t, client) })
}

func retryReturnsTheFirstJob(t *testing.T, client *framefleet.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec, err := framefleet.NewJob(&pb.Template{Html: cardHTML}, map[string]any{"name": "retry"},
		framefleet.Options{Width: 64, Height: 64, FPS: 10, Frames: 2})
	if err != nil {
		t.Fatal(err)
	}
	first, err := client.SubmitRetry(ctx, spec, "go-retry-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := client.SubmitRetry(ctx, spec, "go-retry-1")
	if err != nil {
		t.Fatal(err)
	}
	if again.GetId() != first.GetId() {
		t.Fatalf("a retry made a second job: %s, then %s", first.GetId(), again.GetId())
	}
}

func submitWatchSucceeds(t *testing.T, client *framefleet.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	spec, err := framefleet.NewJob(&pb.Template{Html: cardHTML},
		map[string]any{"name": "Go", "referrals": 12},
		framefleet.Options{Width: 64, Height: 64, FPS: 10, Frames: 5, Labels: map[string]string{"client": "go"}})
	if err != nil {
		t.Fatal(err)
	}
	job, err := client.Submit(ctx, spec)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if job.GetId() == "" || len(job.GetContentKey()) != 64 {
		t.Fatalf("submitted job lacks an id or content key: %v", job)
	}

	var updates []*pb.WatchJobResponse
	final, err := client.Watch(ctx, job.GetId(), func(u *pb.WatchJobResponse) error {
		updates = append(updates, u)
		t.Logf("%s %d/%d frames, %.1f fps", framefleet.StateName(u.GetJob().GetState()),
			u.GetJob().GetFramesDone(), u.GetJob().GetFramesTotal(), u.GetFps())
		return nil
	})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	if len(updates) == 0 {
		t.Fatal("watch delivered no update")
	}
	if final.GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %s: %s %s", final.GetState(), final.GetErrorClass(), final.GetErrorMessage())
	}
	var done uint32
	for _, u := range updates {
		if u.GetJob().GetFramesDone() < done {
			t.Fatalf("progress went backwards: %d after %d", u.GetJob().GetFramesDone(), done)
		}
		done = u.GetJob().GetFramesDone()
	}
	if final.GetFramesDone() != 5 || final.GetFramesTotal() != 5 {
		t.Fatalf("final progress %d/%d, want 5/5", final.GetFramesDone(), final.GetFramesTotal())
	}
	stored, err := client.Get(ctx, job.GetId())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if stored.GetSpec().GetParams().GetFields()["name"].GetStringValue() != "Go" ||
		stored.GetSpec().GetLabels()["client"] != "go" {
		t.Fatalf("params or labels lost on the way: %v", stored.GetSpec())
	}

	// Wait on a finished job returns at once with the same record.
	waited, err := client.Wait(ctx, job.GetId())
	if err != nil || waited.GetOutputUrl() != final.GetOutputUrl() {
		t.Fatalf("wait: %v, %v", waited, err)
	}

	u, err := url.Parse(final.GetOutputUrl())
	if err != nil || u.Scheme != "file" {
		t.Fatalf("output URL %q is not a file:// URL", final.GetOutputUrl())
	}
	info, err := os.Stat(u.Path)
	if err != nil {
		t.Fatalf("output: %v", err)
	}
	if info.Size() == 0 || uint64(info.Size()) != final.GetOutputBytes() {
		t.Fatalf("output is %d bytes, the job says %d", info.Size(), final.GetOutputBytes())
	}
}

func refusedWithErrorClass(t *testing.T, client *framefleet.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec, err := framefleet.NewJob(&pb.Template{Html: cardHTML}, nil,
		framefleet.Options{Width: 63, Height: 64, FPS: 10, Frames: 5})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Submit(ctx, spec)
	var refusal *framefleet.Error
	if !errors.As(err, &refusal) || refusal.Code != pb.ErrorClass_ERROR_CLASS_INVALID_JOB || refusal.Class != "INVALID_JOB" {
		t.Fatalf("an odd width was not refused with INVALID_JOB: %v", err)
	}

	_, err = client.Get(ctx, "no-such-job")
	if err == nil {
		t.Fatal("getting an unknown job succeeded")
	}
}

func cancel(t *testing.T, client *framefleet.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Long enough that it cannot finish before the cancel arrives.
	spec, err := framefleet.NewJob(&pb.Template{Html: cardHTML}, map[string]any{"name": "cancel me"},
		framefleet.Options{Width: 64, Height: 64, FPS: 10, Duration: 600})
	if err != nil {
		t.Fatal(err)
	}
	job, err := client.Submit(ctx, spec)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	cancelled, err := client.Cancel(ctx, job.GetId())
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if cancelled.GetState() != pb.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("after cancel the job is %s", cancelled.GetState())
	}
	_, err = client.Wait(ctx, job.GetId())
	var failed *framefleet.JobFailedError
	if !errors.As(err, &failed) || failed.Job.GetState() != pb.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("wait on a cancelled job: %v", err)
	}
}
