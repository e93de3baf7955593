package framefleet

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/framefleet/framefleet/clients/go/framefleetv1"
)

// Options are a job's output settings and scheduling; zero values take the coordinator's
// defaults (1280x720, 30 fps, CRF 23, preset veryfast, the coordinator's destination).
type Options struct {
	Width, Height, FPS uint32
	// Duration in seconds; ignored when Frames is set.
	Duration float64
	Frames   uint32
	CRF      *uint32
	Preset   string
	// A local directory (path or file:// URL) or s3://bucket/prefix.
	Destination string
	Priority    int32
	MaxAttempts uint32
	Labels      map[string]string
	// Render even if an output for this content and destination already exists.
	Force bool
	// A readable output name besides the content-addressed one, e.g. "{row_key}.mp4" or
	// "{batch}/{name}.mp4" (fields: row_key, batch, batch_id, key, or a parameter).
	Name string
	// Split an MP4 into this many chunks rendered at once on free slots (1: never split; 0:
	// the coordinator decides by length and free slots), or into chunks of ChunkFrames frames.
	Chunks, ChunkFrames uint32
}

// assetSuffixes are the files beside a template that LoadTemplate bundles with it.
var assetSuffixes = map[string]bool{}

func init() {
	for _, s := range strings.Fields(".css .js .mjs .json .woff .woff2 .ttf .otf .png .jpg" +
		" .jpeg .gif .webp .svg .avif .mp4 .webm .mp3 .wav .ogg") {
		assetSuffixes[s] = true
	}
}

// LoadTemplate reads an HTML template and the asset files beside it (fonts, images, scripts,
// styles: the page is served from these and never reaches the network). Hidden files and
// folders are left out.
func LoadTemplate(path string) (*pb.Template, error) {
	html, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Class: "TEMPLATE_NOT_FOUND", Code: pb.ErrorClass_ERROR_CLASS_TEMPLATE_NOT_FOUND, Message: err.Error(), Err: err}
	}
	template := &pb.Template{Html: string(html), Assets: map[string][]byte{}}
	root := filepath.Dir(path)
	self, _ := filepath.Abs(path)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() || !assetSuffixes[filepath.Ext(p)] {
			return nil
		}
		if abs, _ := filepath.Abs(p); abs == self {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		relative, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		template.Assets[filepath.ToSlash(relative)] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bundling the assets of %s: %w", path, err)
	}
	return template, nil
}

// NewJob is a job spec for a template, its parameters (JSON-like values: string, float64,
// int, bool, nil, []any, map[string]any) and options.
func NewJob(template *pb.Template, params map[string]any, opts Options) (*pb.JobSpec, error) {
	values, err := structpb.NewStruct(params)
	if err != nil {
		return nil, &Error{Class: "INVALID_JOB", Code: pb.ErrorClass_ERROR_CLASS_INVALID_JOB, Message: "bad parameters: " + err.Error(), Err: err}
	}
	return &pb.JobSpec{
		Source: &pb.JobSpec_Template{Template: template},
		Params: values,
		Output: &pb.OutputSettings{
			Width:           given(opts.Width),
			Height:          given(opts.Height),
			Fps:             given(opts.FPS),
			DurationSeconds: given(opts.Duration),
			Frames:          given(opts.Frames),
			Codec:           "h264",
			Crf:             opts.CRF,
			Preset:          opts.Preset,
		},
		Destination: opts.Destination,
		Priority:    opts.Priority,
		MaxAttempts: opts.MaxAttempts,
		Labels:      opts.Labels,
		Force:       opts.Force,
		OutputName:  opts.Name,
		Chunks:      opts.Chunks,
		ChunkFrames: opts.ChunkFrames,
	}, nil
}

// given is nil for a zero value: Options' zeros mean "the default", which the proto tells
// from a zero given by leaving the field unset (a zero given is refused as INVALID_JOB).
func given[T uint32 | float64](value T) *T {
	if value == 0 {
		return nil
	}
	return &value
}

// TemplateJob is NewJob for a template file and the assets beside it.
func TemplateJob(path string, params map[string]any, opts Options) (*pb.JobSpec, error) {
	template, err := LoadTemplate(path)
	if err != nil {
		return nil, err
	}
	return NewJob(template, params, opts)
}
