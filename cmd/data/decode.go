package main

import "github.com/clipadapter/clipgo/clip/preprocess"

// decodeImage opens and fully decodes one image file with the decoder the
// toolkit's image pipeline uses, so check finds exactly the images that
// training and evaluation would fail on.
func decodeImage(path string) error {
	_, err := preprocess.Open(path)
	return err
}
