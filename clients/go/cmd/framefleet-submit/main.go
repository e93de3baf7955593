// Command framefleet-submit renders an HTML template on a framefleet farm: it submits the
// template with its parameters, prints progress while the job runs, then the output URL.
//
//	framefleet-submit -coordinator 127.0.0.1:7070 -param name=Ada -param referrals=12 \
//	    -width 1280 -height 720 -fps 30 -duration 12 card.html
//
// -param values are JSON when they parse as JSON (12, true, [1,2]), otherwise strings.
// Exit status: 0 succeeded, 1 the job failed or was cancelled, 2 bad input, 3 coordinator
// unreachable.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/framefleet/framefleet/clients/go/framefleet"
	pb "github.com/framefleet/framefleet/clients/go/framefleetv1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type params map[string]any

func (p params) String() string { return fmt.Sprint(map[string]any(p)) }

func (p params) Set(kv string) error {
	key, value, ok := strings.Cut(kv, "=")
	if !ok || key == "" {
		return fmt.Errorf("%q is not KEY=VALUE", kv)
	}
	var parsed any
	if json.Unmarshal([]byte(value), &parsed) != nil {
		parsed = value
	}
	p[key] = parsed
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("framefleet-submit", flag.ContinueOnError)
	flags.SetOutput(stderr)
	coordinator := flags.String("coordinator", envOr("FRAMEFLEET_COORDINATOR", "127.0.0.1:7070"),
		"coordinator address (default $FRAMEFLEET_COORDINATOR)")
	tlsCA := flags.String("tls-ca", os.Getenv("FRAMEFLEET_TLS_CA"),
		"CA of the coordinator's certificate: connect over TLS (default $FRAMEFLEET_TLS_CA)")
	token := flags.String("token", os.Getenv("FRAMEFLEET_TOKEN"),
		"client token (default $FRAMEFLEET_TOKEN)")
	values := params{}
	flags.Var(values, "param", "template parameter KEY=VALUE (repeatable)")
	var opts framefleet.Options
	width := flags.Uint("width", 1280, "width in pixels (even)")
	height := flags.Uint("height", 720, "height in pixels (even)")
	fps := flags.Uint("fps", 30, "frames per second")
	flags.Float64Var(&opts.Duration, "duration", 0, "length in seconds")
	frames := flags.Uint("frames", 0, "frame count (instead of -duration)")
	flags.StringVar(&opts.Destination, "out", "", "output directory or s3://bucket/prefix "+
		"(default: the coordinator's)")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: framefleet-submit [flags] TEMPLATE.html")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() != 1 {
		flags.Usage()
		return 2
	}
	opts.Width, opts.Height, opts.FPS, opts.Frames = uint32(*width), uint32(*height),
		uint32(*fps), uint32(*frames)
	if opts.Duration == 0 && opts.Frames == 0 {
		opts.Duration = 12
	}

	spec, err := framefleet.TemplateJob(flags.Arg(0), values, opts)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	var dial []grpc.DialOption
	if *tlsCA != "" {
		tls, err := framefleet.WithTLS(*tlsCA)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 2
		}
		dial = append(dial, tls)
	}
	if *token != "" {
		dial = append(dial, framefleet.WithToken(*token))
	}
	client, err := framefleet.Dial(*coordinator, dial...)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 3
	}
	defer client.Close()

	job, err := client.Submit(ctx, spec)
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "submitted %s\n", job.GetId())
	final, err := client.Watch(ctx, job.GetId(), func(u *pb.WatchJobResponse) error {
		j := u.GetJob()
		fmt.Fprintf(stdout, "%s %d/%d frames %.1f fps\n",
			framefleet.StateName(j.GetState()), j.GetFramesDone(), j.GetFramesTotal(), u.GetFps())
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	if final.GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
		return fail(stderr, &framefleet.JobFailedError{Job: final})
	}
	fmt.Fprintln(stdout, final.GetOutputUrl())
	return 0
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "error:", err)
	var refusal *framefleet.Error
	switch {
	case errors.As(err, &refusal):
		return 2
	case status.Code(err) == codes.Unavailable:
		return 3
	}
	return 1
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
