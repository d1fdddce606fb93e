package sweep

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/rundir"
)

// fakeTrain writes a stand-in for the train binary that records its
// arguments, one per line, in dir/argv.
func fakeTrain(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "fake train")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > " + shellQuote(filepath.Join(dir, "argv")) + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestWriteSlurm(t *testing.T) {
	dir := t.TempDir()
	writeBases(t, filepath.Join(dir, "cfg"), []string{"dtd"}, []string{"coop", "zeroshot"})
	out := filepath.Join(dir, "out")
	f, err := Parse(`[sweep]
methods = ["zeroshot", "coop"]
datasets = ["dtd"]
shots = [1, 16]
seeds = [1, 2, 3]
base = "` + dir + `/cfg/{dataset}/{method}.toml"
out = "` + out + `"
epochs_by_shots = {1 = 50, 16 = 200}
set = ["data.root=/data/with space", "data.templates=ensemble"]
[sweep.per_method.zeroshot]
shots = [16]
seeds = [1]
[slurm]
partition = "gpu"
time = "08:00:00"
mem = "48G"
parallel = 3
extra = ["--qos=normal"]
setup = ["export CLIPGO_TEST=1"]
`)
	if err != nil {
		t.Fatal(err)
	}
	cells, err := f.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 7 {
		t.Fatalf("%d cells, want 7", len(cells))
	}
	bin := fakeTrain(t, dir)
	script, err := WriteSlurm(out, cells, SlurmOptions{TrainBin: bin, Workdir: dir, Spec: f.Slurm})
	if err != nil {
		t.Fatal(err)
	}
	if script != filepath.Join(out, ScriptFile) {
		t.Errorf("script at %s", script)
	}
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		"#!/bin/bash\n",
		"#SBATCH --job-name=clipgo-sweep\n",
		"#SBATCH --array=0-6%3\n",
		"#SBATCH --output=" + filepath.Join(out, "logs", "%A_%a.out") + "\n",
		"#SBATCH --time=08:00:00\n",
		"#SBATCH --gres=gpu:1\n",
		"#SBATCH --cpus-per-task=4\n",
		"#SBATCH --mem=48G\n",
		"#SBATCH --partition=gpu\n",
		"#SBATCH --qos=normal\n",
		"#SBATCH --chdir=" + dir + "\n",
		"export CLIPGO_TEST=1\n",
		"manifest=" + filepath.Join(out, ManifestFile) + "\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("script lacks %q:\n%s", want, text)
		}
	}
	// Every #SBATCH line comes before the first command, or sbatch ignores it.
	lines := strings.Split(text, "\n")
	lastSbatch, firstCmd := -1, len(lines)
	for i, l := range lines {
		if strings.HasPrefix(l, "#SBATCH") {
			lastSbatch = i
		} else if l != "" && !strings.HasPrefix(l, "#") && firstCmd == len(lines) {
			firstCmd = i
		}
	}
	if lastSbatch > firstCmd {
		t.Errorf("#SBATCH on line %d after the first command on line %d", lastSbatch+1, firstCmd+1)
	}
	if _, err := os.Stat(filepath.Join(out, "logs")); err != nil {
		t.Errorf("logs directory: %v", err)
	}

	m, err := os.ReadFile(filepath.Join(out, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	mlines := strings.Split(strings.TrimSuffix(string(m), "\n"), "\n")
	if len(mlines) != 1+len(cells) || mlines[0] != "index\tdir\tcommand" {
		t.Fatalf("manifest:\n%s", m)
	}
	for i, c := range cells {
		fields := strings.Split(mlines[i+1], "\t")
		if len(fields) != 3 || fields[0] != strconv.Itoa(i) || fields[1] != c.Dir {
			t.Errorf("manifest line %d: %q", i+1, mlines[i+1])
		}
		if !strings.HasPrefix(fields[2], shellQuote(bin)+" -config ") {
			t.Errorf("manifest line %d does not call the train binary: %q", i+1, fields[2])
		}
	}

	// Run the script as an array task would, with the fake binary: it must
	// pass exactly the cell's arguments.
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash to run the script")
	}
	runTask := func(i int) (string, error) {
		os.Remove(filepath.Join(dir, "argv"))
		cmd := exec.Command("bash", script)
		cmd.Env = append(os.Environ(), "SLURM_ARRAY_TASK_ID="+strconv.Itoa(i))
		outb, err := cmd.CombinedOutput()
		return string(outb), err
	}
	argv := func() []string {
		b, err := os.ReadFile(filepath.Join(dir, "argv"))
		if err != nil {
			return nil
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	for _, i := range []int{0, 3, 6} {
		if outp, err := runTask(i); err != nil {
			t.Fatalf("task %d: %v\n%s", i, err, outp)
		}
		want, _ := cells[i].TrainArgs()
		if got := argv(); !slices.Equal(got, want) {
			t.Errorf("task %d ran train with\n %q\nwant\n %q", i, got, want)
		}
	}
	if got := argv(); !slices.Contains(got, "data.root=/data/with space") || !slices.Contains(got, "train.epochs=200") {
		t.Errorf("task 6 arguments %q lack the set and epochs overrides", got)
	}
	// A cell with a checkpoint is resumed; a finished one is skipped.
	c := cells[2]
	os.MkdirAll(c.Dir, 0o755)
	os.WriteFile(filepath.Join(c.Dir, rundir.CheckpointFile), nil, 0o644)
	if outp, err := runTask(2); err != nil {
		t.Fatalf("task 2: %v\n%s", err, outp)
	}
	if got := argv(); !slices.Equal(got, []string{"-resume", c.Dir}) {
		t.Errorf("task 2 with a checkpoint ran train %q, want -resume %s", got, c.Dir)
	}
	os.WriteFile(filepath.Join(c.Dir, rundir.ResultFile), []byte("{}"), 0o644)
	outp, err := runTask(2)
	if err != nil || argv() != nil || !strings.Contains(outp, "already finished") {
		t.Errorf("task 2 finished: err %v, train ran with %q, output %q", err, argv(), outp)
	}
	if outp, err := runTask(7); err == nil || !strings.Contains(outp, "no cell 7") {
		t.Errorf("task 7 of 7 cells: err %v, output %q", err, outp)
	}

	// gres = "none" drops the GPU request; no parallel cap drops the %.
	s := Script(4, "/m.tsv", "/logs", SlurmOptions{TrainBin: "/bin/train", Workdir: "/w", Spec: SlurmSpec{GRES: "none"}})
	if strings.Contains(string(s), "--gres") || !strings.Contains(string(s), "#SBATCH --array=0-3\n") || !strings.Contains(string(s), "#SBATCH --time=04:00:00\n") {
		t.Errorf("script with gres none:\n%s", s)
	}
}
